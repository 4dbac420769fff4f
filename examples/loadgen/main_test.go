package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// summaryLine matches the summary line exactly as the issue specifies it.
var summaryLine = regexp.MustCompile(`^loadgen sessions=(\d+) turns=(\d+) turns_per_s=(\S+) p50_ms=(\S+) ` +
	`p99_ms=(\S+) overhead_p99_ms=(\S+) errors=(\d+) shed=(\d+) lost=(\d+) dup=(\d+) crossed=(\d+) server_rss_mb=(\S+)\n$`)

// parseSummary checks that out is exactly one summary line and returns its
// fields by name.
func parseSummary(t *testing.T, out string) map[string]float64 {
	t.Helper()
	m := summaryLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout is not one summary line:\n%s", out)
	}
	names := []string{"sessions", "turns", "turns_per_s", "p50_ms", "p99_ms", "overhead_p99_ms",
		"errors", "shed", "lost", "dup", "crossed", "server_rss_mb"}
	fields := make(map[string]float64)
	for i, name := range names {
		v, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			t.Fatalf("%s=%s: %v", name, m[i+1], err)
		}
		fields[name] = v
	}
	return fields
}

func TestMainHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("run(-h) = %d, want 0", code)
	}
	for _, flag := range []string{"-url", "-sessions", "-turns", "-think", "-ramp", "-report", "-metrics", "-timeout", "-retries"} {
		if !strings.Contains(stderr.String(), "\n  "+flag+" ") {
			t.Errorf("-h does not list %s:\n%s", flag, stderr.String())
		}
	}
}

func TestMainBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"extra argument", []string{"ws://x/ws"}, `unexpected argument "ws://x/ws"`},
		{"png report", []string{"-report", "out.png"}, "name it .html"},
		{"http url", []string{"-url", "http://x/ws"}, "want a ws:// or wss:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("run(%q) = %d, want 2", tt.args, code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("run(%q) stderr lacks %q:\n%s", tt.args, tt.want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("run(%q) wrote to stdout: %s", tt.args, stdout.String())
			}
		})
	}
}

func TestMainRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rules    map[turnKey]fakeRule
		wantCode int
	}{
		{"clean", nil, 0},
		{"dup", map[turnKey]fakeRule{{1, 2}: {dup: true}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t, &fakeServer{rules: tt.rules, rssBytes: 42e6})
			report := filepath.Join(t.TempDir(), "report.html")
			var stdout, stderr bytes.Buffer
			args := []string{"-url", f.url(), "-sessions", "5", "-turns", "4", "-ramp", "50ms",
				"-interval", "20ms", "-report", report}
			if code := run(args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("run = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			sum := parseSummary(t, stdout.String())
			if sum["sessions"] != 5 || sum["turns"] != 20 || sum["server_rss_mb"] != 42 {
				t.Errorf("summary %s: want sessions=5 turns=20 server_rss_mb=42.0", stdout.String())
			}
			if !strings.Contains(stderr.String(), "connected=") {
				t.Errorf("stderr has no progress line:\n%s", stderr.String())
			}
			page, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, page)
		})
	}
}
