package main

import (
	"context"
	"errors"
	"io"
)

// runPublish is a placeholder until issue 6's publisher lands.
func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bundlepub publish: not built yet (issue 6)")
}
