package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestSpans(t *testing.T) {
	tests := []struct {
		lo, hi, width int
		want          [][2]int
	}{
		{32768, 60999, 1, [][2]int{{10000, 32767}, {61000, 65535}}},
		{32768, 60999, 44, [][2]int{{10000, 32724}, {61000, 65492}}},
		{1024, 65535, 1, nil},
		{10000, 65000, 1000, nil},
		{20000, 65535, 1, [][2]int{{10000, 19999}}},
	}
	for _, tt := range tests {
		got := spans(tt.lo, tt.hi, tt.width)
		if len(got) != len(tt.want) {
			t.Errorf("spans(%d, %d, %d) = %v, want %v", tt.lo, tt.hi, tt.width, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("spans(%d, %d, %d) = %v, want %v", tt.lo, tt.hi, tt.width, got, tt.want)
			}
		}
	}
}

func outside(t *testing.T, p int) {
	t.Helper()
	lo, hi := EphemeralRange()
	if p >= lo && p <= hi {
		t.Errorf("port %d is inside the ephemeral range %d-%d", p, lo, hi)
	}
	if p < lowest || p > 65535 {
		t.Errorf("port %d is outside %d-65535", p, lowest)
	}
}

func TestFree(t *testing.T) {
	ports := Free(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		outside(t, p)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestBlock(t *testing.T) {
	offsets := []int{0, 1, 2, 11, 43}
	base := Block(t, offsets...)
	for _, off := range offsets {
		outside(t, base+off)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
		if err != nil {
			t.Errorf("port %d (base+%d) is not free: %v", base+off, off, err)
			continue
		}
		l.Close()
	}
}

// TestBlockFreeSeesBusyPorts holds a port and checks that no block
// covering it counts as free.
func TestBlockFreeSeesBusyPorts(t *testing.T) {
	held := Free(t, 1)[0]
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(held))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if blockFree(held, []int{0}) {
		t.Errorf("block at the held port %d counted as free", held)
	}
	if blockFree(held-3, []int{0, 3}) {
		t.Errorf("block at %d with offset 3 over the held port %d counted as free", held-3, held)
	}
}

func TestAddrs(t *testing.T) {
	addrs := Addrs(t, 3)
	if len(addrs) != 3 {
		t.Fatalf("Addrs(3) = %v", addrs)
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s is not a free loopback address: %v", a, err)
			continue
		}
		outside(t, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
}
