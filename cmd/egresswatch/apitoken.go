package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/pflag"

	"github.com/egresswatch/egresswatch/agent"
)

// apiTokenFlag binds --api-token-file for the commands that ask the running
// agent. The token itself never comes from a flag: it would show in ps.
func apiTokenFlag(f *pflag.FlagSet, file *string) {
	f.StringVar(file, "api-token-file", "", "file holding the agent's API token (or set "+agent.APITokenEnv+")")
}

// apiTarget is where the running agent's API is and how to prove the right
// to ask it.
type apiTarget struct {
	listen, tokenFile string
}

// apiGet asks the running agent's local API, sending the bearer token when
// one is configured. A transport error is returned as it is, for the caller
// to say what it was doing.
func apiGet(ctx context.Context, listen, tokenFile, pathQuery string) (*http.Response, error) {
	tok, err := agent.ReadAPIToken(tokenFile, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+pathQuery, nil)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return http.DefaultClient.Do(req)
}

// apiStatusError explains an answer other than 200.
func apiStatusError(listen string, resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("agent at %s refused the request (%s): give its API token with --api-token-file or %s",
			listen, resp.Status, agent.APITokenEnv)
	}
	return fmt.Errorf("agent at %s answered %s", listen, resp.Status)
}
