package fsm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Mermaid returns the definition as a Mermaid stateDiagram-v2, with the
// definition's name as title. Each transition is labelled with its event,
// its guard's name in brackets, "after D" if the event is its source
// state's timeout, and "(internal)" for an internal transition.
func (d *Definition[S, E]) Mermaid() string {
	var b strings.Builder
	// The title is YAML front matter: a double-quoted string is safe.
	fmt.Fprintf(&b, "---\ntitle: %s\n---\nstateDiagram-v2\n", strconv.Quote(d.name))
	ids := make([]string, len(d.states))
	for _, st := range d.spec.States {
		name := st.State.String()
		ids[st.State] = name
		if !mermaidID.MatchString(name) || mermaidReserved[name] {
			ids[st.State] = fmt.Sprintf("s%d", uint64(st.State))
			fmt.Fprintf(&b, "    state \"%s\" as %s\n", mermaidText(name), ids[st.State])
		}
	}
	fmt.Fprintf(&b, "    [*] --> %s\n", ids[d.initial])
	for _, t := range d.spec.Transitions {
		fmt.Fprintf(&b, "    %s --> %s : %s\n", ids[t.From], ids[t.To], mermaidText(d.label(t)))
	}
	for _, st := range d.spec.States {
		if d.states[st.State].terminal {
			fmt.Fprintf(&b, "    %s --> [*]\n", ids[st.State])
		}
	}
	return b.String()
}

var (
	mermaidID       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	mermaidReserved = map[string]bool{
		"state": true, "note": true, "end": true, "as": true, "direction": true,
		"class": true, "classdef": true, "click": true, "style": true,
	}
	mermaidEscaper = strings.NewReplacer("#", "#35;", ";", "#59;", `"`, "#quot;", "\n", " ", "\r", " ")
)

// mermaidText escapes the characters that end or break a Mermaid label.
func mermaidText(s string) string { return mermaidEscaper.Replace(s) }

// DOT returns the definition as a Graphviz digraph named after the
// definition, labelled like [Definition.Mermaid]. Timeout transitions are
// dashed, terminal states drawn with a double border, and a point marks the
// initial state.
func (d *Definition[S, E]) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(d.name))
	b.WriteString("\trankdir=LR;\n\tnode [shape=box, style=rounded];\n\tstart [shape=point, label=\"\"];\n")
	for _, st := range d.spec.States {
		extra := ""
		if d.states[st.State].terminal {
			extra = ", peripheries=2"
		}
		fmt.Fprintf(&b, "\ts%d [label=%s%s];\n", uint64(st.State), dotQuote(st.State.String()), extra)
	}
	fmt.Fprintf(&b, "\tstart -> s%d;\n", d.initial)
	for _, t := range d.spec.Transitions {
		extra := ""
		if d.timesOut(t) {
			extra = ", style=dashed"
		}
		fmt.Fprintf(&b, "\ts%d -> s%d [label=%s%s];\n", uint64(t.From), uint64(t.To), dotQuote(d.label(t)), extra)
	}
	b.WriteString("}\n")
	return b.String()
}

var dotEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "")

func dotQuote(s string) string { return `"` + dotEscaper.Replace(s) + `"` }

// label is a transition's label in both diagrams.
func (d *Definition[S, E]) label(t TransitionSpec[S, E]) string {
	s := t.Event.String()
	if t.GuardName != "" {
		s += " [" + t.GuardName + "]"
	}
	if d.timesOut(t) {
		s += " after " + shortDuration(time.Duration(d.states[t.From].timeout))
	}
	if t.Internal {
		s += " (internal)"
	}
	return s
}

// timesOut reports whether t is taken when its source state times out.
func (d *Definition[S, E]) timesOut(t TransitionSpec[S, E]) bool {
	info := d.states[t.From]
	return info.timeout > 0 && info.timeoutEvent == t.Event
}

// shortDuration formats d like time.Duration.String without zero trailing
// units: "5m" rather than "5m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
