package extauthz

import (
	"encoding/json"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// FuzzCheck feeds CheckRequest bytes (proto.Unmarshal, as the gRPC server
// does) to Check, from a trusted peer: no panic, no error, always exactly
// one of an allow or a denial, and a denial carries a §6 status and the
// three-member JSON body. Seeds: testdata/fuzz/FuzzCheck (Envoy-shaped
// requests, raw and merged, with bodies, and broken ones), plus fresh
// signed requests, one of which is allowed once.
func FuzzCheck(f *testing.F) {
	r := newRig(f, rigOpts{})
	s := shippedSettings(f)
	merged := s
	merged.encodeRaw = false
	for _, cr := range []*authv3.CheckRequest{
		envoyRequest(r.sign(f, "GET", "/v1/orders/1?a=1", "orders.get", nil), nil, s),
		envoyRequest(r.sign(f, "POST", "/v1/orders", "orders.create", []byte(`{"a":1}`), "Content-Type", "application/json"), []byte(`{"a":1}`), merged),
		{},
	} {
		b, err := proto.Marshal(cr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ctx := peer.NewContext(f.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	f.Fuzz(func(t *testing.T, b []byte) {
		var cr authv3.CheckRequest
		if proto.Unmarshal(b, &cr) != nil {
			return // the gRPC server refuses it before Check
		}
		resp, err := r.srv.Check(ctx, &cr)
		if err != nil || resp == nil {
			t.Fatalf("Check = %v, %v; want a response", resp, err)
		}
		ok, den := resp.GetOkResponse(), resp.GetDeniedResponse()
		if (ok == nil) == (den == nil) || (ok != nil) != (resp.GetStatus().GetCode() == int32(codes.OK)) {
			t.Fatalf("response %v: want exactly one of an allow (status OK) or a denial", resp)
		}
		if cr.GetAttributes().GetRequest().GetHttp() == nil && ok != nil {
			t.Fatal("a CheckRequest without http attributes was allowed")
		}
		if den != nil {
			if c := den.GetStatus().GetCode(); c < 400 || c > 599 {
				t.Fatalf("denial status %d", c)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(den.GetBody()), &body); err != nil || len(body) != 3 || body["allowed"] != false {
				t.Fatalf("deny body %q", den.GetBody())
			}
		}
	})
}
