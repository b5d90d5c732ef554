package proc

import (
	"fmt"
	"os"
)

// Spec describes a program to start. The zero value of every field is usable
// except Path, which is required.
type Spec struct {
	// Path is the program file, passed to execve as is: there is no $PATH
	// search, and a relative path is resolved after changing into Dir.
	// Required: the zero value "" makes Start fail.
	Path string

	// Args is the full argument vector, argv[0] included.
	// Zero value (nil or empty): []string{Path}.
	Args []string

	// Env is the child's environment, "KEY=value" entries.
	// Zero value nil: the Go runtime's environment (os.Environ). Inside a
	// cgo library that is a snapshot taken when the library was loaded plus
	// Go-side changes, not Python's os.environ, so callers there should pass
	// the environment explicitly. A non-nil empty slice gives an empty
	// environment.
	Env []string

	// Dir is the child's working directory.
	// Zero value "": the caller's working directory.
	Dir string

	// Files maps the child's descriptors: child fd i is a duplicate of the
	// caller's descriptor Files[i]. An entry of -1 means /dev/null for
	// i < 3 (stdin, stdout, stderr) and "closed" for i >= 3. Descriptors
	// 0..2 beyond the end of Files are /dev/null too. No other descriptor is
	// inherited. The caller keeps ownership of its descriptors; they only
	// need to stay open until Start returns.
	// Zero value nil: stdin, stdout and stderr are /dev/null, nothing else
	// is open. Pass []int{0, 1, 2} to share the caller's stdio.
	Files []int

	// KillWithParent makes the kernel SIGKILL the child when the parent
	// process dies (PR_SET_PDEATHSIG). The "parent" is the package's spawner
	// thread, which lives as long as the process (see the package doc).
	// Zero value false: the child outlives the caller.
	KillWithParent bool

	// NewSession runs the child in a new session and process group (setsid),
	// detaching it from the caller's controlling terminal and from signals
	// sent to the caller's process group (a terminal's Ctrl-C).
	// Zero value false: the child stays in the caller's session and group.
	NewSession bool
}

// closeFD is the syscall.ProcAttr.Files entry that tells the child to close
// that descriptor.
const closeFD = ^uintptr(0)

// validate reports a Spec that cannot be started, before any fork.
func (s *Spec) validate() error {
	if s.Path == "" {
		return fmt.Errorf("proc: start: Spec.Path is empty")
	}
	for i, fd := range s.Files {
		if fd < -1 {
			return fmt.Errorf("proc: start %s: Files[%d] = %d is neither a descriptor nor -1", s.Path, i, fd)
		}
	}
	return nil
}

// argv returns the argument vector to exec.
func (s *Spec) argv() []string {
	if len(s.Args) == 0 {
		return []string{s.Path}
	}
	return s.Args
}

// env returns the environment to exec.
func (s *Spec) env() []string {
	if s.Env == nil {
		return os.Environ()
	}
	return s.Env
}
