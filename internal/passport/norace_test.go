//go:build !race

package passport

const raceEnabled = false
