package bundle

import (
	"math/big"
	"strings"
	"testing"
)

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want string // big.Rat RatString; "" means refused
	}{
		{"1000.00", "1000"},
		{"1000", "1000"},
		{"0.1", "1/10"},
		{"-2.50", "-5/2"},
		{"007", "7"},
		{"0", "0"},
		{"-0", "0"},
		{"123456789012345678901234567890.000000000000000000001", "123456789012345678901234567890000000000000000000001/1000000000000000000000"},
		{"", ""},
		{"-", ""},
		{"+1", ""},
		{"1e3", ""},
		{"1E3", ""},
		{".5", ""},
		{"5.", ""},
		{"1.2.3", ""},
		{" 1", ""},
		{"1 ", ""},
		{"0x10", ""},
		{"1_000", ""},
		{"--1", ""},
		{"NaN", ""},
		{"Inf", ""},
		{"1/2", ""},
		{strings.Repeat("9", 257), ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, ok := ParseDecimal(tt.in)
			switch {
			case tt.want == "" && ok:
				t.Errorf("ParseDecimal(%q) = %v, want refused", tt.in, r)
			case tt.want != "" && !ok:
				t.Errorf("ParseDecimal(%q) refused, want %s", tt.in, tt.want)
			case ok && r.RatString() != tt.want:
				t.Errorf("ParseDecimal(%q) = %s, want %s", tt.in, r.RatString(), tt.want)
			}
		})
	}
	a, _ := ParseDecimal("1000.00")
	b, _ := ParseDecimal("1000")
	if a.Cmp(b) != 0 || a.Cmp(big.NewRat(1000, 1)) != 0 {
		t.Error("1000.00 and 1000 compare unequal")
	}
}
