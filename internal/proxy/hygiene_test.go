package proxy

import (
	"net/http"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

func TestOriginalHadBody(t *testing.T) {
	tests := []struct {
		name   string
		method string
		hdr    http.Header
		want   bool
	}{
		{"GET, nothing said", "GET", http.Header{}, false},
		{"HEAD, nothing said", "HEAD", http.Header{}, false},
		{"OPTIONS, nothing said", "OPTIONS", http.Header{}, false},
		{"DELETE, nothing said", "DELETE", http.Header{}, true},
		{"POST, nothing said", "POST", http.Header{}, true},
		{"POST, length 0", "POST", http.Header{"X-Original-Content-Length": {"0"}}, false},
		{"GET, length 3", "GET", http.Header{"X-Original-Content-Length": {"3"}}, true},
		{"GET, chunked", "GET", http.Header{"X-Original-Transfer-Encoding": {"chunked"}}, true},
		{"length 0 and chunked", "DELETE", http.Header{"X-Original-Content-Length": {"0"}, "X-Original-Transfer-Encoding": {"chunked"}}, true},
		{"empty transfer coding, no length", "POST", http.Header{"X-Original-Transfer-Encoding": {""}}, true},
		{"empty transfer coding, no length, GET", "GET", http.Header{"X-Original-Transfer-Encoding": {""}}, false},
		{"length not decimal", "GET", http.Header{"X-Original-Content-Length": {"-0"}}, true},
		{"length twice", "GET", http.Header{"X-Original-Content-Length": {"0", "0"}}, true},
		{"length empty", "GET", http.Header{"X-Original-Content-Length": {""}}, true},
		{"length too long", "GET", http.Header{"X-Original-Content-Length": {"0000000000000000000"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := originalHadBody(tt.hdr, tt.method); got != tt.want {
				t.Errorf("originalHadBody(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestPreCheck(t *testing.T) {
	tests := []struct {
		name   string
		method string
		hdr    http.Header
		want   reason.Detail // "" when accepted
	}{
		{"plain", "GET", http.Header{"Content-Type": {"a/b"}, "Accept": {"x", "y"}}, ""},
		{"extension method", "PURGE", http.Header{}, ""},
		{"lower method", "get", http.Header{}, reason.DetailMethodSpelling},
		{"method with a non-ASCII byte", "G\xc3\x89T", http.Header{}, reason.DetailMethodSpelling},
		{"empty method", "", http.Header{}, reason.DetailMethodSpelling},
		{"two Content-Type", "GET", http.Header{"Content-Type": {"a", "b"}}, reason.DetailHeaderRepeated},
		{"Content-Type by two spellings", "GET", http.Header{"Content-Type": {"a"}, "Content_type": {"b"}}, reason.DetailHeaderRepeated},
		{"two Content-Encoding", "GET", http.Header{"Content-Encoding": {"", "gzip"}}, reason.DetailHeaderRepeated},
		{"two X-Host", "GET", http.Header{"X-Host": {"a", "b"}}, reason.DetailHeaderRepeated},
		{"two X-Original-Url", "GET", http.Header{"X-Original-Url": {"/a", "/b"}}, reason.DetailHeaderRepeated},
		{"two Range", "GET", http.Header{"Range": {"bytes=0-1", "bytes=2-3"}}, reason.DetailHeaderRepeated},
		{"two Accept (a list)", "GET", http.Header{"Accept": {"a", "b"}}, ""},
		{"two Authorization (core's)", "GET", http.Header{"Authorization": {"a", "b"}}, ""},
		{"two Cookie", "GET", http.Header{"Cookie": {"a=1", "b=2"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if detail, err := preCheck(tt.method, tt.hdr); detail != tt.want || (err != nil) != (tt.want != "") {
				t.Errorf("preCheck(%s) = %q (%v), want %q", tt.name, detail, err, tt.want)
			}
		})
	}
}

func TestDropUncovered(t *testing.T) {
	h := http.Header{
		"X-Http-Method-Override": {"DELETE"}, "X_http_method_override": {"DELETE"},
		"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "Accept": {"*/*"},
	}
	dropUncovered(h, []string{"x-http-method-override", "x-nonce"}, false)
	for _, k := range []string{"X_http_method_override", "X-Original-Url", "X-Rewrite-Url"} {
		if _, ok := h[k]; ok {
			t.Errorf("uncovered %s kept", k)
		}
	}
	for _, k := range []string{"X-Http-Method-Override", "Accept"} {
		if _, ok := h[k]; !ok {
			t.Errorf("%s dropped", k)
		}
	}
	kept := http.Header{"X-Original-Url": {"/admin"}}
	dropUncovered(kept, nil, true)
	if kept.Get("X-Original-Url") == "" {
		t.Error("keep_override_headers dropped X-Original-Url")
	}
}
