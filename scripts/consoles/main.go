// Command consoles keeps ops consoles open in headless Chromium for a while,
// signed in and showing one hunt, and optionally saves a screenshot of the
// first at the end. scripts/bench.sh uses it to measure the claim ceiling
// with consoles open (BENCH_CONSOLES=N), and docs/console-*.png were taken
// with it:
//
//	go run ./scripts/consoles --url http://127.0.0.1:8080/ops/ --data ./cairn-data \
//	    --hunt demo --n 2 --for 30s --screenshot /tmp/console.png
//
// The admin token comes from --token, else CAIRN_ADMIN_TOKEN, else the data
// directory's secrets.env. It talks to loopback addresses only.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairnhq/cairn/internal/ops/opsbrowser"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consoles:", err)
		os.Exit(1)
	}
}

func run() error {
	consoleURL := flag.String("url", "http://127.0.0.1:8080/ops/", "the console's URL (a loopback host)")
	data := flag.String("data", "./cairn-data", "data directory whose secrets.env holds the admin token")
	token := flag.String("token", os.Getenv("CAIRN_ADMIN_TOKEN"), "admin token (default: CAIRN_ADMIN_TOKEN, else --data's secrets.env)")
	huntID := flag.String("hunt", "demo", "hunt to show")
	n := flag.Int("n", 2, "consoles (browsers) to keep open")
	hold := flag.Duration("for", 30*time.Second, "how long to keep them open once signed in")
	shot := flag.String("screenshot", "", "save a PNG of the first console here at the end")
	flag.Parse()
	u, err := url.Parse(*consoleURL)
	if err != nil {
		return err
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return fmt.Errorf("--url %s: loopback hosts only", *consoleURL)
	}
	if *token == "" {
		if *token, err = tokenFromData(*data); err != nil {
			return err
		}
	}
	chromium, err := opsbrowser.FindChromium()
	if err != nil {
		return err
	}
	// SIGTERM (bench.sh stopping it) or SIGINT closes the browsers and removes their profiles.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, *hold+2*time.Minute)
	defer cancel()
	var cs []*opsbrowser.Console
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := 0; i < *n; i++ {
		c, err := opsbrowser.Open(ctx, chromium, *consoleURL, 1400, 1300)
		if err != nil {
			return err
		}
		cs = append(cs, c)
		if err := c.SignIn(*token); err != nil {
			return fmt.Errorf("console %d: sign in: %w", i, err)
		}
		if err := c.PickHunt(*huntID); err != nil {
			return fmt.Errorf("console %d: %w", i, err)
		}
	}
	fmt.Fprintf(os.Stderr, "consoles: %d open on hunt %s for %v\n", *n, *huntID, *hold)
	select {
	case <-time.After(*hold):
	case <-sctx.Done():
		return nil // asked to stop: the deferred Close ends the browsers
	case <-ctx.Done():
		return ctx.Err()
	}
	if *shot != "" {
		if err := cs[0].Screenshot(*shot); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "consoles: screenshot %s\n", *shot)
	}
	return nil
}

// tokenFromData reads CAIRN_ADMIN_TOKEN from DIR/secrets.env.
func tokenFromData(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "secrets.env"))
	if err != nil {
		return "", fmt.Errorf("no --token, no CAIRN_ADMIN_TOKEN, and %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "CAIRN_ADMIN_TOKEN="); ok {
			return strings.Trim(v, `"'`), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("secrets.env has no CAIRN_ADMIN_TOKEN")
}
