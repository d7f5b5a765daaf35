package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/jitfs/jitfs/internal/mountinfo"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command line is cobra's: help in the form people know from kubectl,
// gcsfuse and rclone (a usage line, examples, two-dash flags, help on
// stdout), shell completion for bash, zsh, fish and PowerShell, and
// subcommand suggestions, none of which we then write or keep. Kong was the
// other candidate; cobra won because its flags are pflag's, whose API is
// the standard library's, so each command keeps declaring its flags where
// it uses them.
//
// A command's run function declares its flags on a FlagSet and parses its
// arguments with parseArgs. Help and completion need the flags without
// running the command: describe calls the run function with describeArgs,
// and parseArgs hands the declared FlagSet back before anything else
// happens. cobra parses the command line once to check it (unknown flags,
// bad values, --help), then the run function parses the same arguments
// again against its own FlagSet, which declares the same flags.

// command is one jitfs subcommand.
type command struct {
	name  string
	args  string // what follows the name in the usage line
	short string // one line, for the command list
	long  string // paragraphs for the command's help; short when empty
	// examples are command lines, each optionally preceded by "# comment"
	// lines.
	examples string
	group    string
	// flagGroups put flags under headings in the help; the rest are listed
	// under "Flags".
	flagGroups []flagGroup
	// argsEnd: flags end at the first argument (jitfs run: what follows is
	// the render command's).
	argsEnd bool
	run     func(args []string, stdout, stderr io.Writer) error
	subs    []command
	// completeArgs completes the positional arguments (default: files).
	completeArgs cobra.CompletionFunc
}

type flagGroup struct {
	title string
	names []string
}

// Command groups, in the order the help lists them.
var commandGroups = []*cobra.Group{
	{ID: "serve", Title: "Serving files:"},
	{ID: "frames", Title: "Before and after a frame:"},
	{ID: "traces", Title: "Traces and benchmarks:"},
	{ID: "other", Title: "Other commands:"},
}

// describeArgs is the argument list describe runs a command with; no real
// command line holds a NUL byte.
var describeArgs = []string{"\x00describe"}

// described carries a command's FlagSet out of its run function.
type described struct{ fl *pflag.FlagSet }

func (d *described) Error() string { return "flags described" }

// newFlags is the FlagSet of the command called name. Errors come back to
// the caller, which prints them as one line: pflag's own printing would add
// the whole flag list.
func newFlags(name string) *pflag.FlagSet {
	fl := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.Usage = func() {}
	fl.SortFlags = false
	return fl
}

// parseArgs parses a command's arguments (flags may come before, between
// and after the positional ones; after "--" everything is positional) and
// returns the positional ones.
func parseArgs(fl *pflag.FlagSet, args []string) ([]string, error) {
	if len(args) == len(describeArgs) && args[0] == describeArgs[0] {
		return nil, &described{fl}
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, flagError(fl, err)
	}
	if err := checkValues(fl); err != nil {
		return nil, err
	}
	return fl.Args(), nil
}

// describe returns the flags run declares.
func describe(run func(args []string, stdout, stderr io.Writer) error) *pflag.FlagSet {
	var d *described
	if err := run(describeArgs, io.Discard, io.Discard); errors.As(err, &d) {
		return d.fl
	}
	return pflag.NewFlagSet("", pflag.ContinueOnError)
}

// newRoot builds the jitfs command tree. rawArgs are the arguments after
// the command's path, which the run function parses itself; entry sets
// them before executing.
func newRoot(stdout, stderr io.Writer, rawArgs *[]string) *cobra.Command {
	root := &cobra.Command{
		Use:   "jitfs",
		Short: "serve Cloud Storage to render nodes lazily, from a shared local-SSD cache",
		Long: "jitfs serves a Cloud Storage bucket prefix as a read-only file system that fetches each file the first\n" +
			"time a render opens it, into a local-SSD cache every frame and process on the node shares. It writes\n" +
			"render outputs back to Cloud Storage, and takes prefetch requests from Nuke, Blender and render agents\n" +
			"so a frame's files are local before it starts. Documentation: README.md and docs/ in the source.",
		Example: "  # one render task: mount the scene, run the command, flush its outputs, unmount\n" +
			"  jitfs run --mount gs://show-assets/proj:/mnt/show --output gs://show-renders/proj:/mnt/out -- \\\n" +
			"      nuke -x /mnt/show/comp/sh010.nk 1001-1010\n\n" +
			"  # the node daemon every task on the node shares\n" +
			"  jitfs daemon --cache-dir /mnt/disks/ssd/jitfs --cache-size 300GiB",
		Version:       "", // --version is answered in entry, with versionText
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: false,
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return flagError(c.Flags(), err) })
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { writeHelp(c.OutOrStdout(), c) })
	root.SetUsageFunc(func(c *cobra.Command) error { writeHelp(c.OutOrStderr(), c); return nil })
	root.AddGroup(commandGroups...)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	root.Flags().Bool("version", false, "print the version, commit and Go version jitfs was built from")
	for _, c := range append(commands(), versionCommand()) {
		root.AddCommand(c.cobra(stdout, stderr, rawArgs))
	}
	// cobra adds these when it executes; the help lists them, and Find
	// must find them, before that.
	root.SetHelpCommand(&cobra.Command{Use: "help [COMMAND...]", Short: "the help of a command", GroupID: "other",
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return unknownCommand(lastParent(root, args), rest)
			}
			writeHelp(stdout, target)
			return nil
		}})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Short = "print the shell completion script for bash, zsh, fish or powershell"
			c.Long, c.Args = "", nil // our help; unknownCommand names a wrong shell
			c.Example = "  source <(jitfs completion bash)\n  jitfs completion zsh > \"${fpath[1]}/_jitfs\""
			c.RunE = func(c *cobra.Command, args []string) error {
				if len(args) == 0 {
					writeHelp(stderr, c)
				}
				return unknownCommand(c, args)
			}
			for _, s := range c.Commands() {
				s.Args = usageArgs(s.Args)
			}
		}
	}
	return root
}

// lastParent is the deepest command args name, the one a mistyped word
// after it was meant for.
func lastParent(root *cobra.Command, args []string) *cobra.Command {
	c := root
	for _, a := range args {
		next, _, err := c.Find([]string{a})
		if err != nil || next == c {
			break
		}
		c = next
	}
	return c
}

// usageArgs makes cobra's own argument checks usage errors (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(c *cobra.Command, args []string) error {
		if err := check(c, args); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		return nil
	}
}

// cobra turns c into a cobra command whose run calls c.run with the raw
// arguments.
func (c command) cobra(stdout, stderr io.Writer, rawArgs *[]string) *cobra.Command {
	use := c.name
	if c.args != "" {
		use += " " + c.args
	}
	cc := &cobra.Command{Use: use, Short: c.short, Long: c.long, Example: c.examples, GroupID: c.group,
		ValidArgsFunction: c.completeArgs}
	if len(c.subs) > 0 {
		for _, s := range c.subs {
			cc.AddCommand(s.cobra(stdout, stderr, rawArgs))
		}
		cc.RunE = func(cc *cobra.Command, args []string) error {
			if len(args) == 0 {
				writeHelp(stderr, cc)
			}
			return unknownCommand(cc, args)
		}
		return cc
	}
	fl := describe(c.run)
	fl.VisitAll(func(f *pflag.Flag) { cc.Flags().AddFlag(f) })
	cc.Flags().SortFlags = false
	if c.argsEnd {
		cc.Flags().SetInterspersed(false)
		cc.Annotations = map[string]string{argsEndKey: "true"}
	}
	// Groups are shared between commands: a name the command lacks is
	// skipped (SetAnnotation fails on it).
	for i, g := range c.flagGroups {
		for _, n := range g.names {
			cc.Flags().SetAnnotation(n, flagGroupKey, []string{g.title, strconv.Itoa(i)})
		}
	}
	completeFlags(cc)
	run, argsEnd := c.run, c.argsEnd
	cc.RunE = func(_ *cobra.Command, pos []string) error {
		// An empty argument is an unset variable in a script ($SCENE),
		// never a path anyone meant: "" would be the current directory.
		// jitfs run's arguments past its flags are the render command's.
		for i, a := range pos {
			if a == "" && !argsEnd {
				return fmt.Errorf("%w: argument %d is empty (an unset variable?)", errUsage, i+1)
			}
		}
		return run(*rawArgs, stdout, stderr)
	}
	return cc
}

func versionCommand() command {
	return command{name: "version", short: "print the module version, commit and Go version jitfs was built from",
		group: "other", examples: "  jitfs version\n  jitfs --version",
		run: func(args []string, stdout, stderr io.Writer) error {
			pos, err := parseArgs(newFlags("version"), args)
			if err != nil {
				return err
			}
			if len(pos) > 0 {
				return fmt.Errorf("%w: version takes no arguments", errUsage)
			}
			fmt.Fprint(stdout, versionText())
			return nil
		}}
}

// execute runs the command line args (without the program's name) and
// returns the process's exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	var raw []string
	root := newRoot(stdout, stderr, &raw)
	switch {
	case len(args) == 0:
		writeHelp(stderr, root)
		return 2
	case args[0] == "--version":
		if len(args) > 1 {
			return exitStatus("", fmt.Errorf("%w: --version takes no arguments", errUsage), stderr)
		}
		fmt.Fprint(stdout, versionText())
		return 0
	case (args[0] == "--help" || args[0] == "-h") && len(args) > 1:
		// jitfs --help mount: the help of mount, as jitfs help mount.
		args = append([]string{"help"}, args[1:]...)
	case args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd:
		// The shells' completion scripts ask through this hidden command.
		root.SetArgs(args)
		return exitStatus("completion", root.Execute(), stderr)
	}
	target, rest, err := root.Find(args)
	if err != nil || target == root {
		if err := unknownCommand(root, args); err != nil {
			return exitStatus("", err, stderr)
		}
	}
	name := strings.TrimPrefix(target.CommandPath(), "jitfs ")
	if err := checkArgs(target, rest); err != nil {
		return exitStatus(name, err, stderr)
	}
	raw = rest
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if cmd != nil && cmd != root {
		name = strings.TrimPrefix(cmd.CommandPath(), "jitfs ")
	}
	return exitStatus(name, err, stderr)
}

// unknownCommand is the error for args naming no subcommand of c, with the
// nearest names, or nil when args hold only flags cobra answers itself
// (--help).
func unknownCommand(c *cobra.Command, args []string) error {
	var word string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			word = a
			break
		}
	}
	if word == "" {
		if len(args) > 0 && args[0] != "-h" && args[0] != "--help" {
			return fmt.Errorf("%w: unknown flag %s; see %s --help", errUsage, args[0], c.CommandPath())
		}
		if len(args) == 0 {
			return fmt.Errorf("%w: want a subcommand; see %s --help", errUsage, c.CommandPath())
		}
		return nil
	}
	if !c.HasParent() && slices.Contains(leftOut, word) {
		return fmt.Errorf("%w: %s is left out of production builds (go build -tags production); a development build has it", errUsage, word)
	}
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return fmt.Errorf("%w: unknown command %q%s; see %s --help", errUsage, word, didYouMean(word, names, ""), c.CommandPath())
}

// checkArgs catches what pflag would take for something else: a bool flag
// followed by true or false (pflag's bools take their value only after
// '=', so "--allow-other false" would make "false" a path), and a long
// flag written with one dash (pflag reads -cache-dir as -c -a -c ...).
func checkArgs(c *cobra.Command, args []string) error {
	fl := c.Flags()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if c.Annotations[argsEndKey] != "" {
				return nil
			}
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fl.Lookup(name)
		if f == nil {
			if !strings.HasPrefix(a, "--") && len(name) > 1 && fl.ShorthandLookup(name[:1]) == nil {
				// pflag would report "-cach-dir" as the shorthand -c.
				var names []string
				fl.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
				return fmt.Errorf("%w: unknown flag %s%s", errUsage, a, didYouMean(name, names, "--"))
			}
			continue
		}
		if !strings.HasPrefix(a, "--") && len(name) > 1 {
			return fmt.Errorf("%w: %s: flags take two dashes: --%s", errUsage, a, strings.TrimPrefix(a, "-"))
		}
		if hasValue {
			continue
		}
		if f.NoOptDefVal != "" {
			if f.Value.Type() == "bool" && i+1 < len(args) && isSwitchValue(args[i+1]) {
				return fmt.Errorf("%w: --%s %s: a switch takes its value after '=': write --%s=%s", errUsage, name, args[i+1], name, args[i+1])
			}
			continue
		}
		i++ // the flag's value
	}
	return nil
}

// isSwitchValue reports whether a looks like a value meant for a switch
// rather than an argument.
func isSwitchValue(a string) bool {
	return strings.EqualFold(a, "true") || strings.EqualFold(a, "false") || a == "0" || a == "1"
}

// flagError rewrites pflag's parse errors as one line a person can act on:
// the nearest flag for an unknown one, and the form a value should take.
func flagError(fl *pflag.FlagSet, err error) error {
	var names []string
	fl.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	var (
		notExist *pflag.NotExistError
		invalid  *pflag.InvalidValueError
		required *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &notExist):
		name := notExist.GetSpecifiedName()
		if name == "" {
			return fmt.Errorf("%w: unknown flag -%s", errUsage, notExist.GetSpecifiedShortnames())
		}
		return fmt.Errorf("%w: unknown flag --%s%s", errUsage, name, didYouMean(name, names, "--"))
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		return fmt.Errorf("%w: --%s %s: want %s", errUsage, f.Name, invalid.GetValue(), valueHint(f))
	case errors.As(err, &required):
		f := required.GetFlag()
		return fmt.Errorf("%w: --%s wants %s", errUsage, f.Name, valueHint(f))
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}

// valueHint says what a flag's value looks like.
func valueHint(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "duration":
		return "a duration such as 5s, 2m or 1h30m"
	case "int", "int64":
		return "a whole number"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	}
	return "a value (see --help)"
}

// didYouMean names the candidates nearest to word, if any is near enough
// to be a typo of it.
func didYouMean(word string, candidates []string, prefix string) string {
	type near struct {
		name string
		d    int
	}
	var best []near
	for _, c := range candidates {
		d := levenshtein.Distance(word, c, nil)
		if d <= max(2, len(word)/3) || (len(word) >= 3 && strings.HasPrefix(c, word)) {
			best = append(best, near{c, d})
		}
	}
	if len(best) == 0 {
		return ""
	}
	sort.SliceStable(best, func(i, j int) bool { return best[i].d < best[j].d })
	if len(best) > 3 {
		best = best[:3]
	}
	quoted := make([]string, len(best))
	for i, b := range best {
		quoted[i] = prefix + b.name
	}
	return " (did you mean " + strings.Join(quoted, " or ") + "?)"
}

// argsEndKey marks a command whose flags end at its first argument.
const argsEndKey = "jitfs_args_end"

// flagGroupKey is the pflag annotation holding a flag's help heading.
const flagGroupKey = "jitfs_group"

// helpWidth is where flag descriptions wrap: help is the same on every
// terminal, and golden-tested.
const helpWidth = 100

// writeHelp prints c's help: what it does, its usage line, examples, then
// its flags by group.
func writeHelp(w io.Writer, c *cobra.Command) {
	var b strings.Builder
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	if desc != "" {
		b.WriteString(strings.TrimSpace(desc) + "\n\n")
	}
	b.WriteString("Usage:\n")
	switch {
	case c.HasAvailableSubCommands():
		b.WriteString("  " + c.CommandPath() + " COMMAND [flags]\n")
	case c.Runnable():
		b.WriteString("  " + c.UseLine() + "\n")
	}
	if c.Example != "" {
		b.WriteString("\nExamples:\n" + strings.TrimRight(c.Example, "\n") + "\n")
	}
	if c.HasAvailableSubCommands() {
		for _, g := range append(c.Groups(), &cobra.Group{ID: "", Title: "Commands:"}) {
			var lines []string
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() && s.GroupID == g.ID {
					lines = append(lines, fmt.Sprintf("  %-14s %s", s.Name(), s.Short))
				}
			}
			if len(lines) > 0 {
				b.WriteString("\n" + g.Title + "\n" + strings.Join(lines, "\n") + "\n")
			}
		}
	}
	b.WriteString(flagHelp(c.LocalFlags()))
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nRun \"%s COMMAND --help\" for a command's flags and examples.\n", c.CommandPath())
	}
	io.WriteString(w, b.String())
}

// flagHelp lists fl's flags under their groups' headings, in declaration
// order, the ungrouped ones last under "Flags".
func flagHelp(fl *pflag.FlagSet) string {
	var titles []string
	groups := map[string]*pflag.FlagSet{}
	order := map[string]int{}
	fl.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		t := "Flags"
		if g := f.Annotations[flagGroupKey]; len(g) == 2 {
			t = g[0]
			order[t], _ = strconv.Atoi(g[1])
		}
		if groups[t] == nil {
			groups[t] = pflag.NewFlagSet(t, pflag.ContinueOnError)
			groups[t].SortFlags = false
			if t != "Flags" {
				titles = append(titles, t)
			}
		}
		groups[t].AddFlag(f)
	})
	sort.SliceStable(titles, func(i, j int) bool { return order[titles[i]] < order[titles[j]] })
	if groups["Flags"] != nil {
		titles = append(titles, "Flags")
	}
	var b strings.Builder
	for _, t := range titles {
		b.WriteString("\n" + t + ":\n" + groups[t].FlagUsagesWrapped(helpWidth))
	}
	return b.String()
}

// completeFlags registers what the shells complete for flag values: the
// choices of the flags that have a fixed set, and directories or files
// for paths.
func completeFlags(c *cobra.Command) {
	choices := map[string][]string{
		"verify": {"streaming", "strict"}, "log-level": {"debug", "info", "warn", "error"},
		"log-format": {"text", "json"}, "scope": {"frame", "miss", "job", "lookahead", "job_seq"},
		"speculate": {"all", "none", "siblings", "sequences", "coopen", "metadata"},
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		kind := placeholder(c.Name(), f)
		if kind != "" {
			// cc's flags are described copies: the run function parses
			// into its own FlagSet, so renaming the type here only
			// changes the help.
			f.Value = named{f.Value, kind}
		}
		switch {
		case f.Name == "speculate":
			// A comma-separated list: complete its last item.
			c.RegisterFlagCompletionFunc(f.Name, func(_ *cobra.Command, _ []string, typed string) ([]cobra.Completion, cobra.ShellCompDirective) {
				done, last := "", typed
				if i := strings.LastIndexByte(typed, ','); i >= 0 {
					done, last = typed[:i+1], typed[i+1:]
				}
				var out []cobra.Completion
				for _, k := range choices[f.Name] {
					listed := slices.Contains(strings.Split(done, ","), k)
					if strings.HasPrefix(k, last) && !listed && (done == "" || (k != "all" && k != "none")) {
						out = append(out, done+k)
					}
				}
				return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
			})
		case choices[f.Name] != nil:
			vals := choices[f.Name]
			c.RegisterFlagCompletionFunc(f.Name, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return vals, cobra.ShellCompDirectiveNoFileComp
			})
		case kind == "DIR":
			c.MarkFlagDirname(f.Name)
		case kind == "FILE":
			c.MarkFlagFilename(f.Name)
		}
	})
}

// placeholder is what the help shows for the value of flag f of command
// cmd, where it says more than the Go type ("" keeps the type).
func placeholder(cmd string, f *pflag.Flag) string {
	if f.Value.Type() != "string" {
		return ""
	}
	switch n := f.Name; {
	case n == "cache-dir" || n == "staging-dir" || n == "trace-root" || n == "root" || n == "work-dir" || n == "data" ||
		(n == "mount" && cmd == "prefetch"):
		return "DIR"
	case n == "manifest" || n == "config" || n == "from-trace" || n == "zone-token-file" || n == "trace" ||
		(n == "prefetch" && cmd == "run") || (n == "output" && cmd == "import-strace"):
		return "FILE"
	case strings.HasSuffix(n, "-size") || strings.HasSuffix(n, "-bytes"):
		return "SIZE"
	case strings.HasSuffix(n, "addr"):
		return "HOST:PORT"
	case n == "zone-cache":
		return "URL"
	case n == "job":
		return "ID"
	case n == "socket" || n == "daemon":
		return "SOCKET"
	case n == "learn-prefix":
		return "gs://B/P"
	}
	return ""
}

// named is a flag value whose help shows a placeholder for its type.
type named struct {
	pflag.Value
	name string
}

func (n named) Type() string { return n.name }

// completeMounts completes jitfs mountpoints, for jitfs unmount.
func completeMounts(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	mounts, _ := mountinfo.OfType("fuse.jitfs")
	return mounts, cobra.ShellCompDirectiveNoFileComp
}
