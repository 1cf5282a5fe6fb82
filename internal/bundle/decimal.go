package bundle

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
)

// maxDecimalBytes bounds a decimal's text; money amounts are short, and
// big.Rat work grows with the digits.
const maxDecimalBytes = 256

// ParseDecimal parses a strict decimal: an optional '-', one or more ASCII
// digits, and optionally '.' and one or more digits. No exponent, no '+', no
// spaces, at most 256 bytes. It serves JSON numbers and decimal strings
// alike (SPEC §5.1 max_txn_value, "1000.00"), so both compare exactly.
func ParseDecimal(raw string) (*big.Rat, bool) {
	if len(raw) == 0 || len(raw) > maxDecimalBytes {
		return nil, false
	}
	s := raw
	if s[0] == '-' {
		s = s[1:]
	}
	intDigits, seenDot, fracDigits := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9' && !seenDot:
			intDigits++
		case c >= '0' && c <= '9':
			fracDigits++
		case c == '.' && !seenDot:
			seenDot = true
		default:
			return nil, false
		}
	}
	if intDigits == 0 || (seenDot && fracDigits == 0) {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(raw)
	return r, ok
}

// decimalValue reads a max_txn_value: a JSON number or a decimal string.
// A JSON number must say exactly what RFC 8785 will write for it (shortest
// double), or the signed bytes and the parsed ceiling would differ: write
// such a value as a string.
func decimalValue(v any, path string) (*big.Rat, error) {
	switch v := v.(type) {
	case string:
		r, ok := ParseDecimal(v)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not a plain decimal", path, v)
		}
		return r, nil
	case json.Number:
		r, ok := ParseDecimal(string(v))
		if !ok {
			return nil, fmt.Errorf("%s: %s is not a plain decimal (no exponent)", path, v)
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s is out of range", path, v)
		}
		short, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
		if !ok || short.Cmp(r) != 0 {
			return nil, fmt.Errorf("%s: %s changes under canonical JSON (RFC 8785); write it as a decimal string", path, v)
		}
		return r, nil
	}
	return nil, fmt.Errorf("%s: must be a number or a decimal string", path)
}
