package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

const usage = "usage: identity token [-issuer URL] [-client ID] [-audience AUD] [USER]"

// tokenConfig is what the token command reads from the environment.
type tokenConfig struct {
	Issuer        string `env:"IDENTITY_ISSUER,required"`
	DemoPassword  string `env:"IDENTITY_DEMO_PASSWORD" secret:"true"`
	ClientSecrets string `env:"IDENTITY_CLIENT_SECRETS" secret:"true"`
}

// tokenCommand prints an access token, for curl, k6 and drills:
//
//	identity token ada                          # a person (demo password)
//	identity token -client orders -audience catalog   # a service
func tokenCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("identity token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	issuer := fs.String("issuer", "", "issuer URL (default IDENTITY_ISSUER)")
	clientID := fs.String("client", identityapi.ClientCLI, "client id: "+identityapi.ClientCLI+" for a person, or a service client")
	audience := fs.String("audience", "", "service tokens: the audience to ask for (default: all the client may call)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("token: %w (%s)", err, usage)
	}
	env := getenv
	if *issuer != "" {
		env = func(k string) string {
			if k == "IDENTITY_ISSUER" {
				return *issuer
			}
			return getenv(k)
		}
	}
	cfg, err := config.Load[tokenConfig](env)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	var tok identityapi.Token
	if *clientID == identityapi.ClientCLI {
		if fs.NArg() != 1 {
			return fmt.Errorf("token: name one demo user (%s)", usage)
		}
		if cfg.DemoPassword == "" {
			return errors.New("IDENTITY_DEMO_PASSWORD: required to sign a user in")
		}
		tok, err = identityapi.UserToken(ctx, hc, cfg.Issuer, *clientID, fs.Arg(0), cfg.DemoPassword)
	} else {
		secrets, perr := idp.ParseClientSecrets(cfg.ClientSecrets)
		if perr != nil {
			return perr
		}
		secret, ok := secrets[*clientID]
		if !ok {
			return fmt.Errorf("IDENTITY_CLIENT_SECRETS: no secret for client %q", *clientID)
		}
		tok, err = identityapi.ServiceToken(ctx, hc, cfg.Issuer, *clientID, secret, *audience)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}
