// Command cairn is the Cairn treasure-hunt backend: `cairn serve` runs it,
// `cairn token` mints a player token, `cairn load` drives load at a server and
// `cairn verify` checks the invariants, `cairn import` streams a file of
// hotspots to a server. Only this package reads flags, the
// environment and signals; everything else receives its configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: cairn <command> [flags]

commands:
  serve    run the server (embedded store by default; --demo for a demo hunt)
  token    mint a player token (HS256, signed with CAIRN_SECRET)
  load     drive an open-loop load at a server and verify it afterwards
  verify   check the invariants I1-I5 and I7 of a server or a data directory
  import   stream a file of hotspots (NDJSON, JSON array or CSV) to a server's hunt

Run 'cairn <command> -h' for a command's flags.
`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	commands := map[string]command{
		"serve":  runServe,
		"token":  runToken,
		"load":   runLoad,
		"verify": runVerify,
		"import": runImport,
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "cairn: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		var ee *exitError
		if errors.As(err, &ee) {
			fmt.Fprintf(stderr, "cairn %s: %v\n", args[0], err)
			return ee.code
		}
		fmt.Fprintf(stderr, "cairn %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// errUsage is returned after a flag set has already printed its complaint.
var errUsage = errors.New("usage")
