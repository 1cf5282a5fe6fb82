package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// TestNoAddedAcceptEncoding: the upstream transport adds no
// Accept-Encoding of its own (Go's adds gzip by default), and passes the
// caller's exactly.
func TestNoAddedAcceptEncoding(t *testing.T) {
	r := newRig(t, nil)
	// A client that sends no Accept-Encoding itself.
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	tests := []struct {
		name string
		hdrs []string
		want []string
	}{
		{"none sent", nil, nil},
		{"caller's own", []string{"Accept-Encoding", "br"}, []string{"br"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := r.sign(t, "GET", r.srv.URL, "/v1/orders/ae", "orders.get", nil, tt.hdrs...)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET = %d", resp.StatusCode)
			}
			r.mu.Lock()
			got := r.seen[i].Header.Values("Accept-Encoding")
			r.mu.Unlock()
			if !slices.Equal(got, tt.want) {
				t.Errorf("upstream Accept-Encoding = %q, want %q", got, tt.want)
			}
		})
	}
}
