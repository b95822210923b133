package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cairnhq/cairn/internal/httpapi"
	"github.com/cairnhq/cairn/internal/hunt"
)

// runToken prints a player token signed with CAIRN_SECRET (from the
// environment or the data directory's secrets.env).
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	player := fs.String("player", "", "player id (the token's sub)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	ttlMax := fs.Duration("max-ttl", httpapi.TokenTTLMaxDefault, "refuse a --ttl longer than this: serve's --token-max-ttl, which refuses such a token")
	issuer := fs.String("issuer", envOr("CAIRN_TOKEN_ISSUER", ""), "the token's iss: serve's --token-issuer (env CAIRN_TOKEN_ISSUER)")
	audience := fs.String("audience", envOr("CAIRN_TOKEN_AUDIENCE", ""), "the token's aud: serve's --token-audience (env CAIRN_TOKEN_AUDIENCE)")
	data := fs.String("data", "./cairn-data", "data directory holding secrets.env (if CAIRN_SECRET is unset)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if !hunt.ValidID(*player) {
		return fmt.Errorf("--player must be 1-%d characters of letters, digits, '.', '_', ':' or '-'", hunt.IDLenMax)
	}
	if *ttl <= 0 || *ttl > *ttlMax {
		return fmt.Errorf("--ttl %v must be in (0, %v]: a server refuses a token that lives longer than its --token-max-ttl (--max-ttl here)", *ttl, *ttlMax)
	}
	secret, err := loadTokenSecret(*data, os.Getenv)
	if err != nil {
		return err
	}
	tok, err := httpapi.MintTokenFor(secret, hunt.PlayerID(*player), *ttl, time.Now(), *issuer, *audience)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
