package server

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-go/parley/internal/redistest"
)

// chromium returns the path of an installed Chromium or Chrome. Without
// one the test skips, except under CI, which installs Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if redistest.InCI() {
		t.Fatal("no Chromium under CI: .ci/run installs Debian's chromium package")
	}
	t.Skip("skipping the browser test: no chromium on PATH (apt-get install -y chromium to run it)")
	return ""
}

// TestChatPageInBrowser drives the chat page in headless Chromium: open the
// page, send a message, see the reply and the new state.
func TestChatPageInBrowser(t *testing.T) {
	exe := chromium(t)
	e := newEnv(t, nil)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser and must not carry a timeout, which
	// would stop the browser with it.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.hs.URL+"/")); err != nil {
		t.Fatalf("opening the chat page: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#state.HELLO`)),
		chromedp.SendKeys(chromedp.ID("text"), "tell me about parsnips"),
		chromedp.Click(chromedp.ID("go")),
		chromedp.WaitVisible(chromedp.CSS(`.msg.reply`)),
	)
	if err != nil {
		t.Fatalf("sending a message from the chat page: %v", err)
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return v
	}
	if session := text("#session"); session == "" {
		t.Error("the page shows no session id")
	}
	if reply := text(".msg.reply"); !strings.Contains(reply, "parsnips") || !strings.Contains(reply, "model") {
		t.Errorf("reply bubble = %q, want the model's answer about parsnips and its timing", reply)
	}
	if state := text("#state"); state != "CHATTING" {
		t.Errorf("state badge = %q, want CHATTING", state)
	}
}
