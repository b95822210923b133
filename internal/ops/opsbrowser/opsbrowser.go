// Package opsbrowser drives the ops console in headless Chromium (Debian's
// `chromium`) with chromedp, for the console's browser test and for
// scripts/consoles, which keeps consoles open during a benchmark. Production
// code does not import it.
//
// A Console is one browser with one tab; its methods wait with the Console's
// context, so give that a deadline.
package opsbrowser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium: no Chromium binary was found.
var ErrNoChromium = errors.New("no chromium binary (install Debian's chromium package)")

// FindChromium returns the path of a Chromium (or Chrome) binary.
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// Console is one headless browser showing the console.
type Console struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Open starts a headless Chromium at chromiumPath with a widthxheight
// window and loads url (the console's /ops/ address). Close stops it.
//
// The browser's profile goes to memory (/dev/shm where there is one) and
// its disk cache is off: a browser writing to the disk the server syncs its
// log on would slow every commit, and a benchmark with consoles open would
// measure that instead of the console.
func Open(ctx context.Context, chromiumPath, url string, width, height int) (*Console, error) {
	profile, err := os.MkdirTemp(memDir(), "cairn-console-chromium-")
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(profile),
		chromedp.Flag("disk-cache-size", "1"),
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	c := &Console{ctx: bctx, cancel: func() { bcancel(); acancel(); os.RemoveAll(profile) }}
	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible("#signin-form")); err != nil {
		c.Close()
		return nil, fmt.Errorf("opening %s: %w", url, err)
	}
	return c, nil
}

// memDir is a directory in memory for the browser's profile, if there is one.
func memDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}

// Close stops the browser.
func (c *Console) Close() { c.cancel() }

// SignIn types the admin token and waits for the console to show.
func (c *Console) SignIn(token string) error {
	return chromedp.Do(c.ctx,
		chromedp.SendKeys("#token", token),
		chromedp.Click("#signin"),
		chromedp.WaitVisible("#console-view"),
	)
}

// PickHunt selects a hunt in the hunt menu (waiting for it to be listed).
func (c *Console) PickHunt(id string) error {
	sel := `#hunt option[value="` + id + `"]`
	if err := chromedp.Do(c.ctx, chromedp.WaitReady(sel)); err != nil {
		return fmt.Errorf("hunt %q not listed: %w", id, err)
	}
	cur, err := chromedp.Run(c.ctx, chromedp.Value("#hunt"))
	if err != nil {
		return err
	}
	if cur == id {
		return nil
	}
	if err := chromedp.Do(c.ctx, chromedp.SetValue("#hunt", id)); err != nil {
		return err
	}
	_, err = chromedp.Run(c.ctx, chromedp.Evaluate[bool](`document.getElementById("hunt").dispatchEvent(new Event("change"))`))
	return err
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](c *Console, expr string) (T, error) {
	return chromedp.Run(c.ctx, chromedp.Evaluate[T](expr))
}

// DrawnCount reads the map's count of drawn hotspots.
func (c *Console) DrawnCount() (int, error) {
	s, err := chromedp.Run(c.ctx, chromedp.Text("#drawn-count"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(s)
}

// Poll evaluates expr (a JavaScript boolean) every 50 ms until it is true,
// and returns how long that took; an error when the deadline passes first.
func (c *Console) Poll(expr string, deadline time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		ok, err := Eval[bool](c, expr)
		if err != nil {
			return 0, err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > deadline {
			return 0, fmt.Errorf("still false after %v: %s", deadline, expr)
		}
		select {
		case <-c.ctx.Done():
			return 0, c.ctx.Err()
		case <-time.After(50 * time.Millisecond): // poll interval
		}
	}
}

// UploadFile puts path into the import's file input, which starts the import.
func (c *Console) UploadFile(path string) error {
	return chromedp.Do(c.ctx, chromedp.SetUploadFiles("#import-file", []string{path}))
}

// Screenshot saves a PNG of the whole page at path.
func (c *Console) Screenshot(path string) error {
	buf, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}
