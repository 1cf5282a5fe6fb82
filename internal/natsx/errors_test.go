package natsx

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestAPIErrorCode(t *testing.T) {
	wrongLast := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 1"}
	tests := []struct {
		name     string
		err      error
		wantCode uint16
		wantOK   bool
	}{
		{"nil", nil, 0, false},
		{"plain error", errors.New("nats: timeout"), 0, false},
		{"typed nil", (*jetstream.APIError)(nil), 0, false},
		{"api error", wrongLast, 10071, true},
		{"wrapped", fmt.Errorf("ledger: consume: %w", fmt.Errorf("nats: %w", wrongLast)), 10071, true},
		{"joined", errors.Join(errors.New("other"), wrongLast), 10071, true},
		{"replicated conflict", &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}, 10164, true},
		{"nats.go sentinel", fmt.Errorf("get: %w", jetstream.ErrStreamNotFound), uint16(jetstream.JSErrCodeStreamNotFound), true},
		{"client-side sentinel", jetstream.ErrInvalidKey, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ok := APIErrorCode(tt.err)
			if code != tt.wantCode || ok != tt.wantOK {
				t.Errorf("APIErrorCode(%v) = %d, %t, want %d, %t", tt.err, code, ok, tt.wantCode, tt.wantOK)
			}
		})
	}
}
