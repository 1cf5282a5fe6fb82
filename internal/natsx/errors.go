package natsx

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// APIErrorCode returns the JetStream error code (err_code, such as 10071 for
// a wrong last sequence) of the first *jetstream.APIError in err's tree, and
// whether there was one. It sees through any wrapping, unlike a bare type
// assertion: classify JetStream outcomes with it, never by error text
// (STYLE §3).
func APIErrorCode(err error) (uint16, bool) {
	apiErr, ok := errors.AsType[*jetstream.APIError](err)
	if !ok || apiErr == nil {
		return 0, false
	}
	return uint16(apiErr.ErrorCode), true
}
