package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
)

// printNow is the "now:" section of a mount's status: each fetch in flight
// and each read blocked on one, a line each, so an operator looking at a
// stalled frame sees which file it waits for, how far its bytes are and
// whom the link is busy for instead.
func printNow(w io.Writer, st hooks.Status) {
	if len(st.Fetching)+len(st.Blocked) == 0 {
		fmt.Fprintln(w, "  now:        nothing in flight")
		return
	}
	fmt.Fprintln(w, "  now:")
	printNowLines(w, "", st)
}

// printNodeNow is the node's "now:" section: every job's sources, each
// path named with its source, as a task may read several.
func printNodeNow(w io.Writer, st daemon.NodeStatus) {
	head := false
	for _, j := range st.Jobs {
		for _, s := range j.Sources {
			if len(s.Prefetch.Fetching)+len(s.Prefetch.Blocked) == 0 {
				continue
			}
			if !head {
				fmt.Fprintln(w, "  now:")
				head = true
			}
			printNowLines(w, strings.TrimSuffix(s.Source, "/")+"/", s.Prefetch)
		}
	}
	if !head {
		fmt.Fprintln(w, "  now:        nothing in flight")
	}
}

func printNowLines(w io.Writer, source string, st hooks.Status) {
	for _, b := range st.Blocked {
		fmt.Fprintf(w, "    blocked  %s %s+%s  %s/%s  %s  %s\n", source+b.Path, nowAt(b.Offset), size(b.Length),
			size(b.BytesDone), size(b.BytesTotal), dur(time.Duration(b.AgeMS)*time.Millisecond), nowAsker(b.Job, b.Task, "", b.PID))
	}
	for _, f := range st.Fetching {
		fmt.Fprintf(w, "    fetching %s %s  %s/%s  %s  %s\n", source+f.Path, nowAt(f.Offset),
			size(f.BytesDone), size(f.BytesTotal), dur(time.Duration(f.AgeMS)*time.Millisecond), nowAsker(f.Job, f.Task, f.Band, f.PID))
	}
	if len(st.Blocked) >= hooks.MaxNow || len(st.Fetching) >= hooks.MaxNow {
		fmt.Fprintf(w, "    (the %d oldest of each shown)\n", hooks.MaxNow)
	}
}

// nowAsker says who asked, then why (the band), leaving out what is not
// known.
func nowAsker(job, task, band string, pid int) string {
	var parts []string
	if job != "" {
		parts = append(parts, "job "+job)
	}
	if task != "" {
		parts = append(parts, "task "+task)
	}
	if pid != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", pid))
	}
	if band != "" {
		parts = append(parts, "band "+band)
	}
	if len(parts) == 0 {
		return "(unknown)"
	}
	return strings.Join(parts, ", ")
}

// nowAt is where a range starts, in the units of its sizes.
func nowAt(off int64) string {
	if off == 0 {
		return "@0"
	}
	return "@" + size(off)
}
