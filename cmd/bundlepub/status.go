package main

import (
	"context"
	"errors"
	"io"
)

// runStatus is a placeholder until issue 6's status command lands.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bundlepub status: not built yet (issue 6)")
}
