package natsx

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test here starts servers and connections; none may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
