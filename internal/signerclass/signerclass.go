// Package signerclass is the signer taxonomy of SPEC §2.1
// (trustplane-signer-taxonomy-v1): the four key binding classes and their ranks.
//
// It is shared by passport parsing (cnf.key_binding) and policy bundles
// (required_key_binding) so both agree on one closed set. It imports only the
// standard library.
package signerclass

// Class is a signer class. The zero value is not a valid class.
type Class uint8

// The classes, in ascending strength. The numeric values are not the ranks.
const (
	Software Class = iota + 1
	RemoteKMS
	HardwareLocal
	AttestedWorkload
)

var names = [...]string{
	Software:         "software",
	RemoteKMS:        "remote_kms",
	HardwareLocal:    "hardware_local",
	AttestedWorkload: "attested_workload",
}

var ranks = [...]int{
	Software:         10,
	RemoteKMS:        20,
	HardwareLocal:    30,
	AttestedWorkload: 40,
}

// Ordered lists every class in taxonomy order, weakest first.
var Ordered = [...]Class{Software, RemoteKMS, HardwareLocal, AttestedWorkload}

// Parse returns the class named s, exactly as the taxonomy spells it.
func Parse(s string) (Class, bool) {
	switch s {
	case "software":
		return Software, true
	case "remote_kms":
		return RemoteKMS, true
	case "hardware_local":
		return HardwareLocal, true
	case "attested_workload":
		return AttestedWorkload, true
	}
	return 0, false
}

// Valid reports whether c is one of the four classes.
func (c Class) Valid() bool { return c >= Software && c <= AttestedWorkload }

// String returns the taxonomy name, or "" for an invalid class.
func (c Class) String() string {
	if !c.Valid() {
		return ""
	}
	return names[c]
}

// Rank returns the taxonomy rank (10, 20, 30, 40), or 0 for an invalid class.
func (c Class) Rank() int {
	if !c.Valid() {
		return 0
	}
	return ranks[c]
}

// Satisfies reports whether c meets the minimum min: a required class is a
// minimum, and an invalid class satisfies nothing.
func (c Class) Satisfies(min Class) bool {
	return c.Valid() && min.Valid() && ranks[c] >= ranks[min]
}
