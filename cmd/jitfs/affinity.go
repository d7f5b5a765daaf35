package main

import (
	"fmt"
	"io"
	"time"

	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/nomadmeta"

	"github.com/spf13/pflag"
)

// runAffinityKey is `jitfs affinity-key`: the key under which node daemons
// publish a source (or, with --job, a job) in Nomad node metadata, for a
// job's submitter to put in its affinity (docs/affinity.md).
func runAffinityKey(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("affinity-key")
	job := fl.String("job", "", "print the key of this job ID (as given to jitfs run --job) instead of a source's")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	switch {
	case *job != "" && len(pos) == 0:
		fmt.Fprintln(stdout, nomadmeta.Key(*job))
		return nil
	case *job == "" && len(pos) == 1:
		bucket, prefix, err := parseGSURL(pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, nomadmeta.Key(nomadmeta.Source(bucket, prefix)))
		return nil
	}
	return fmt.Errorf("%w: want gs://BUCKET[/PREFIX], or --job ID alone", errUsage)
}

// nomadFlags are `jitfs daemon`'s flags for publishing where the cache's
// bytes are as Nomad node metadata.
type nomadFlags struct {
	on       *bool
	addr     *string
	interval *time.Duration
	minBytes *string
}

func addNomadFlags(fl *pflag.FlagSet) nomadFlags {
	return nomadFlags{
		on: fl.Bool("nomad-meta", false, "publish the keys of the sources and jobs the cache holds as Nomad node metadata ("+
			nomadmeta.MetaSources+", "+nomadmeta.MetaJobs+") through the Nomad client agent; token from NOMAD_TOKEN, CA from NOMAD_CACERT"),
		addr:     fl.String("nomad-addr", "", "the Nomad agent's HTTP API (default: NOMAD_ADDR, else "+nomadmeta.DefaultAddr+")"),
		interval: fl.Duration("nomad-meta-interval", nomadmeta.DefaultInterval, "least time between two publishes of the node metadata (only changes are sent)"),
		minBytes: fl.String("nomad-meta-min-bytes", "256MiB", "publish a source or job once the cache holds this many of its bytes"),
	}
}

// apply fills the daemon's affinity configuration from the flags.
func (f nomadFlags) apply(cfg *daemon.AffinityConfig) error {
	if !*f.on {
		return nil
	}
	minBytes, err := parseSize(*f.minBytes)
	if err != nil {
		return fmt.Errorf("%w: --nomad-meta-min-bytes: %v", errUsage, err)
	}
	if *f.interval <= 0 {
		return fmt.Errorf("%w: --nomad-meta-interval must be positive", errUsage)
	}
	c, err := nomadmeta.FromEnv()
	if err != nil {
		return err
	}
	if *f.addr != "" {
		c.Addr = *f.addr
	}
	cfg.Nomad, cfg.Interval, cfg.MinBytes = c, *f.interval, max(minBytes, 1)
	return nil
}

// printWhereTheBytesAre is the status lines of the node's sources and of
// its Nomad metadata publisher.
func printWhereTheBytesAre(w io.Writer, st daemon.NodeStatus) {
	counting := ""
	if st.SourcesCounting {
		counting = " (still counting what the cache held at start)"
	}
	if len(st.Sources) > 0 {
		fmt.Fprintf(w, "  sources     what the cache holds of each source read on this node%s\n", counting)
	}
	for _, s := range st.Sources {
		fmt.Fprintf(w, "    %-40s key %s  %s resident in %d files\n", s.Source, s.Key, size(s.ResidentBytes), s.Files)
	}
	if m := st.NomadMeta; m != nil {
		fmt.Fprintf(w, "  nomad meta  %s: %d publishes, %d failed", m.Addr, m.Publishes, m.Errors)
		if m.Failing {
			fmt.Fprintf(w, ", FAILING (%s)", m.LastError)
		}
		fmt.Fprintf(w, "; %s=%q %s=%q\n", nomadmeta.MetaSources, m.Published[nomadmeta.MetaSources], nomadmeta.MetaJobs, m.Published[nomadmeta.MetaJobs])
	}
}
