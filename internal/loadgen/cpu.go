package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, which
// the Linux ABI fixes at 100 on every architecture Go supports there
// (sysconf(_SC_CLK_TCK) reports the same number). The resolution is 10 ms,
// so CPU figures need runs of seconds.
const userHZ = 100

// parseStat returns utime + stime from the text of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	const utime = 14 - 3
	if len(f) <= utime+1 {
		return 0, fmt.Errorf("%d fields after the command name, want at least %d", len(f), utime+2)
	}
	var ticks uint64
	for _, x := range f[utime : utime+2] {
		n, err := strconv.ParseUint(string(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time field %q: %w", x, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// processCPU returns the user + system CPU time pid has used so far.
// Children's time is not included: a process under test must not be a
// wrapper of the one doing the work.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	d, err := parseStat(b)
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: /proc/%d/stat: %w", pid, pid, err)
	}
	return d, nil
}

// CPUGroup is a named set of processes whose CPU time is measured
// together: the verifier nodes, the nats-servers, a proxy.
type CPUGroup struct {
	Role string
	PIDs []int
}

// cpuSample is the CPU time of each process of each group at one instant:
// cpuSample[group][i] is groups[group].PIDs[i]'s.
type cpuSample [][]time.Duration

func sampleCPU(groups []CPUGroup) (cpuSample, error) {
	s := make(cpuSample, len(groups))
	var errs []error
	for i, g := range groups {
		s[i] = make([]time.Duration, len(g.PIDs))
		for j, pid := range g.PIDs {
			d, err := processCPU(pid)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", g.Role, err))
				continue
			}
			s[i][j] = d
		}
	}
	return s, errors.Join(errs...)
}

// meter reads what a run costs the machine: the CPU of the measured
// processes and of this one, and the NATS servers' counters, once before
// and once after the run.
type meter struct {
	cpu        []CPUGroup
	monitor    []string
	before     cpuSample
	selfBefore time.Duration
	natsBefore *natsSample
}

// startMeter takes the before samples.
func startMeter(ctx context.Context, cpu []CPUGroup, monitor []string) (*meter, error) {
	m := &meter{cpu: cpu, monitor: monitor}
	var err error
	if m.natsBefore, err = sampleNATSIf(ctx, monitor); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if m.before, err = sampleCPU(cpu); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	// This process's own CPU is a courtesy figure: unreadable, it is 0.
	m.selfBefore, _ = processCPU(os.Getpid())
	return m, nil
}

// meterReading is what stop read after the run.
type meterReading struct {
	after cpuSample
	self  time.Duration
	nats  *NATSUsage
}

// stop takes the after samples, as soon as the run ends: the report is
// built from them afterwards (finish).
func (m *meter) stop(ctx context.Context) (*meterReading, error) {
	after, err := sampleCPU(m.cpu)
	if err != nil {
		return nil, fmt.Errorf("loadgen: a measured process: %w", err)
	}
	self, _ := processCPU(os.Getpid())
	use, err := natsDelta(ctx, m.monitor, m.natsBefore)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return &meterReading{after: after, self: self - m.selfBefore, nats: use}, nil
}

// finish writes the run's CPU and NATS figures into rep, once rep holds
// every worker's results.
func (m *meter) finish(rep *Report, r *meterReading) {
	rep.NATS = r.nats
	rep.finish(m.cpu, m.before, r.after, r.self)
}
