package loadgen

import (
	"strings"
	"testing"
)

func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"http://127.0.0.1:8081", "http://127.0.0.1:8081", ""},
		{"http://127.9.8.7:80/", "http://127.9.8.7:80", ""},
		{"http://[::1]:8081", "http://[::1]:8081", ""},
		{"http://localhost:8081", "http://localhost:8081", ""},
		{"http://10.0.0.1:8081", "", "not a loopback address"},
		{"http://[::ffff:8.8.8.8]:80", "", "not a loopback address"},
		{"http://0.0.0.0:8081", "", "not a loopback address"},
		{"http://example.com:80", "", "not an IP address or localhost"},
		{"https://127.0.0.1:8443", "", `scheme "https", want http`},
		{"http://127.0.0.1:8081/v1", "", "nothing after it"},
		{"http://user@127.0.0.1:8081", "", "nothing after it"},
		{"http://127.0.0.1", "", "no port"},
		{"127.0.0.1:8081", "", "127.0.0.1:8081"},
		{"ftp://127.0.0.1:21", "", "scheme"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CheckTarget(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("CheckTarget(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CheckTarget(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestLoopbackControl: the dialer refuses what CheckTarget could not see
// (a name resolving elsewhere).
func TestLoopbackControl(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:80", true},
		{"192.168.1.1:80", false},
		{"[2001:db8::1]:80", false},
	} {
		err := loopbackControl("tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("loopbackControl(%s) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}
