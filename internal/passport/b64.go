package passport

// sigB64Len is the length of a 64-byte signature in unpadded base64url.
const sigB64Len = 86

// smallDecoded is the size of Parse's stack buffer for the decoded header
// and payload. A larger buffer would cost more to zero on every call than
// the rare allocation it saves.
const smallDecoded = 1536

// b64URLDecode maps a base64url alphabet byte (RFC 4648 §5) to its 6-bit
// value and any other byte to 0xff. A constant, so that there is no package
// state to guard.
const b64URLDecode = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x3e\xff\xff" +
	"\x34\x35\x36\x37\x38\x39\x3a\x3b\x3c\x3d\xff\xff\xff\xff\xff\xff" +
	"\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e" +
	"\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\xff\xff\xff\xff\x3f" +
	"\xff\x1a\x1b\x1c\x1d\x1e\x1f\x20\x21\x22\x23\x24\x25\x26\x27\x28" +
	"\x29\x2a\x2b\x2c\x2d\x2e\x2f\x30\x31\x32\x33\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// decodeB64 decodes src, which must be canonical unpadded base64url (SPEC
// §2): only alphabet bytes, no padding, no line breaks, and zero bits in the
// unused low bits of the last character, so that re-encoding gives src back.
// encoding/base64 is not used because its decoders skip CR and LF and take
// []byte, which would cost an allocation per segment. It returns the number
// of bytes written to dst, and false when src is not canonical or dst is too
// short.
func decodeB64[T string | []byte](dst []byte, src T) (int, bool) {
	if len(src)%4 == 1 || len(src)/4*3+max(len(src)%4-1, 0) > len(dst) {
		return 0, false
	}
	n, i := 0, 0
	for ; i+4 <= len(src); i += 4 {
		a, b, c, d := b64URLDecode[src[i]], b64URLDecode[src[i+1]], b64URLDecode[src[i+2]], b64URLDecode[src[i+3]]
		if a|b|c|d == 0xff {
			return 0, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[n], dst[n+1], dst[n+2] = byte(v>>16), byte(v>>8), byte(v)
		n += 3
	}
	switch len(src) - i {
	case 2:
		a, b := b64URLDecode[src[i]], b64URLDecode[src[i+1]]
		if a|b == 0xff || b&0x0f != 0 {
			return 0, false
		}
		dst[n] = a<<2 | b>>4
		n++
	case 3:
		a, b, c := b64URLDecode[src[i]], b64URLDecode[src[i+1]], b64URLDecode[src[i+2]]
		if a|b|c == 0xff || c&0x03 != 0 {
			return 0, false
		}
		dst[n], dst[n+1] = a<<2|b>>4, b<<4|c>>2
		n += 2
	}
	return n, true
}
