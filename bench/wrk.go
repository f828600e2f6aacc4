//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes each wrk connection cycle through the paths listed in
// the file named by WRK_PATHS, from a different starting point.
const wrkScript = `
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
`

// load is what a wrk run measured.
type load struct {
	rps      float64 // requests per second
	p50, p99 float64 // latency, milliseconds
	requests int64
	non2xx   int64
}

// runWrk sends GETs of paths (cycled) to base with conns keep-alive
// connections on two threads for the given time.
func runWrk(ctx context.Context, work, base string, paths []string, conns int, d time.Duration) (load, error) {
	list := filepath.Join(work, "wrk-paths")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		return load{}, err
	}
	script := filepath.Join(work, "wrk.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return load{}, err
	}
	out, err := output(ctx, []string{"WRK_PATHS=" + list}, "wrk", "-t2", fmt.Sprintf("-c%d", conns),
		fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", "-s", script, base)
	if err != nil {
		return load{}, err
	}
	return parseWrk(out)
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkTotal    = regexp.MustCompile(`(\d+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkSocketEr = regexp.MustCompile(`Socket errors: (.*)`)
)

func parseWrk(out string) (load, error) {
	var l load
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		l.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		l.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocketEr.FindStringSubmatch(out); m != nil {
		return l, fmt.Errorf("wrk: socket errors: %s", m[1])
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			l.p50 = v
		} else {
			l.p99 = v
		}
	}
	return l, nil
}
