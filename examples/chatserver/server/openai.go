package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxOpenAIResponse bounds how much of a backend's response body is read.
const maxOpenAIResponse = 4 << 20

// OpenAI is a [Model] backed by an OpenAI-compatible chat completions
// endpoint (/v1/chat/completions), as served by llama.cpp, vLLM, Ollama and
// others. A batch becomes one request per prompt, sent concurrently. It is
// safe for concurrent use. Use [NewOpenAI]; the zero value is not usable.
type OpenAI struct {
	url    string
	model  string
	apiKey string
	client *http.Client
}

// NewOpenAI returns a backend that posts to baseURL + "/v1/chat/completions"
// (baseURL may also be the full endpoint URL), naming model in each request
// and, when apiKey is not empty, sending it as a bearer token. client nil
// means http.DefaultClient.
func NewOpenAI(baseURL, model, apiKey string, client *http.Client) (*OpenAI, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("server: model URL %q must start with http:// or https://", baseURL)
	}
	url := strings.TrimSuffix(baseURL, "/")
	if !strings.HasSuffix(url, "/chat/completions") {
		url += "/v1/chat/completions"
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &OpenAI{url: url, model: model, apiKey: apiKey, client: client}, nil
}

type chatRequest struct {
	Model    string    `json:"model,omitempty"`
	Messages []Message `json:"messages"`
}

type chatResponse struct {
	Choices []struct {
		Message Message `json:"message"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Complete implements [Model]. The batch fails if any of its requests fails.
func (o *OpenAI) Complete(ctx context.Context, prompts [][]Message) ([]Completion, error) {
	out := make([]Completion, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() { out[i], errs[i] = o.complete(ctx, p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (o *OpenAI) complete(ctx context.Context, prompt []Message) (Completion, error) {
	body, err := json.Marshal(chatRequest{Model: o.model, Messages: prompt})
	if err != nil {
		return Completion{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return Completion{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if o.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.apiKey)
	}
	start := time.Now()
	resp, err := o.client.Do(req)
	if err != nil {
		return Completion{}, fmt.Errorf("server: model backend: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxOpenAIResponse))
	if err != nil {
		return Completion{}, fmt.Errorf("server: model backend: reading response: %w", err)
	}
	var cr chatResponse
	jsonErr := json.Unmarshal(raw, &cr)
	switch {
	case resp.StatusCode != http.StatusOK && jsonErr == nil && cr.Error != nil:
		return Completion{}, fmt.Errorf("server: model backend: %s: %s", resp.Status, cr.Error.Message)
	case resp.StatusCode != http.StatusOK:
		return Completion{}, fmt.Errorf("server: model backend: %s", resp.Status)
	case jsonErr != nil:
		return Completion{}, fmt.Errorf("server: model backend: malformed response: %w", jsonErr)
	case len(cr.Choices) == 0:
		return Completion{}, errors.New("server: model backend: response has no choices")
	}
	return Completion{Text: cr.Choices[0].Message.Content, Service: time.Since(start)}, nil
}
