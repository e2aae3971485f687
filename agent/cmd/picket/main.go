// Command picket is the Linux host metrics agent. See the README for what it does and
// `picket --help` for how to run it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/picket-agent/picket/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
