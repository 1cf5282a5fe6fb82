package cliflag

import (
	"fmt"
	"runtime/debug"
)

// Version is what every command's --version prints: the command, the
// module version and the VCS commit it was built from (runtime/debug build
// information; "(devel)" and "unknown" when the build recorded none, as
// `go run` and `go test` do).
func Version(command string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return command + " (no build information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	commit, modified, when := "unknown", false, ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		case "vcs.time":
			when = " " + s.Value
		}
	}
	if modified {
		commit += "+modified"
	}
	return fmt.Sprintf("%s %s %s commit %s%s %s", command, info.Main.Path, version, commit, when, info.GoVersion)
}

// IsVersion reports whether args ask for the version: a first argument
// --version or -version, which every command accepts before its
// subcommand or flags.
func IsVersion(args []string) bool {
	return len(args) > 0 && (args[0] == "--version" || args[0] == "-version")
}
