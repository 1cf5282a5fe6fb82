package edverify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// decision is the crypto of one request: the passport's JWS signature by a
// trust material key over its signing input, and the proof by the
// passport's cnf key over the 32-byte transcript digest.
type decision struct {
	trustPub, cnfPub []byte
	trust, cnf       *PublicKey
	signingInput     []byte
	passportSig      []byte
	digest           []byte
	proofSig         []byte
}

// decisions returns n decisions under one trust key and n cnf keys, with a
// signing input of the size of a typical passport (about 600 bytes).
func decisions(b testing.TB, n int) []decision {
	b.Helper()
	tpub, tpriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	trust, err := NewPublicKey(tpub)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]decision, n)
	for i := range out {
		cpub, cpriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		cnf, err := NewPublicKey(cpub)
		if err != nil {
			b.Fatal(err)
		}
		in := make([]byte, 600)
		rand.Read(in)
		d := sha256.Sum256(in)
		out[i] = decision{
			trustPub: tpub, cnfPub: cpub, trust: trust, cnf: cnf,
			signingInput: in, passportSig: ed25519.Sign(tpriv, in),
			digest: d[:], proofSig: ed25519.Sign(cpriv, d[:]),
		}
	}
	return out
}

func BenchmarkStdlibVerifyTwice(b *testing.B) {
	ds := decisions(b, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i%len(ds)]
		i++
		if !ed25519.Verify(d.trustPub, d.signingInput, d.passportSig) || !ed25519.Verify(d.cnfPub, d.digest, d.proofSig) {
			b.Fatal("valid decision refused")
		}
	}
}

func BenchmarkVoiVerifyTwice(b *testing.B) {
	ds := decisions(b, 64)
	opts := stdlibOptions()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i%len(ds)]
		i++
		if !voi.VerifyWithOptions(d.trustPub, d.signingInput, d.passportSig, opts) ||
			!voi.VerifyWithOptions(d.cnfPub, d.digest, d.proofSig, opts) {
			b.Fatal("valid decision refused")
		}
	}
}

func BenchmarkVoiExpandedVerifyTwice(b *testing.B) {
	ds := decisions(b, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i%len(ds)]
		i++
		if !d.trust.Verify(d.signingInput, d.passportSig) || !d.cnf.Verify(d.digest, d.proofSig) {
			b.Fatal("valid decision refused")
		}
	}
}

// BenchmarkVoiExpandedCnfPerRequest is the expanded verifier with the
// trust key cached and the cnf key parsed for every request (no LRU).
func BenchmarkVoiExpandedCnfPerRequest(b *testing.B) {
	ds := decisions(b, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i%len(ds)]
		i++
		cnf, err := NewPublicKey(d.cnfPub)
		if err != nil || !d.trust.Verify(d.signingInput, d.passportSig) || !cnf.Verify(d.digest, d.proofSig) {
			b.Fatal("valid decision refused")
		}
	}
}

func BenchmarkNewPublicKey(b *testing.B) {
	ds := decisions(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPublicKey(ds[0].cnfPub); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the CPU time, user and system, used by this process so far.
func cpuTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadConcurrency is the offered concurrency of the load simulation:
// decisions in flight at once, each verifying its two signatures in turn.
const loadConcurrency = 32

// BenchmarkLoad is the load simulation: loadConcurrency goroutines run
// decisions back to back (closed loop) on GOMAXPROCS cores, with each
// verifier. It reports wall time per decision (ns/op), process CPU per
// decision and its inverse, decisions per CPU-second, and the p99 latency of
// a decision (both verifications, queueing included).
func BenchmarkLoad(b *testing.B) {
	ds := decisions(b, 256)
	for _, v := range loadVariants() {
		b.Run(v.name, func(b *testing.B) {
			runLoad(b, ds, v.start(b))
		})
	}
}

// loadVariant is one verifier under load.
type loadVariant struct {
	name   string
	window time.Duration
	batch  bool
	verify func(ctx context.Context, d *decision) bool
}

// start returns the variant's verify function, starting a Batcher owned by
// b if the variant batches.
func (v loadVariant) start(b *testing.B) func(context.Context, *decision) bool {
	if !v.batch {
		return v.verify
	}
	bt := startBatcher(b, Config{Window: v.window})
	return func(ctx context.Context, d *decision) bool {
		return bt.Verify(ctx, d.trust, d.signingInput, d.passportSig) && bt.Verify(ctx, d.cnf, d.digest, d.proofSig)
	}
}

func loadVariants() []loadVariant {
	return []loadVariant{
		{name: "stdlib", verify: func(_ context.Context, d *decision) bool {
			return ed25519.Verify(d.trustPub, d.signingInput, d.passportSig) && ed25519.Verify(d.cnfPub, d.digest, d.proofSig)
		}},
		{name: "expanded", verify: func(_ context.Context, d *decision) bool {
			return d.trust.Verify(d.signingInput, d.passportSig) && d.cnf.Verify(d.digest, d.proofSig)
		}},
		{name: "batched_window=0", batch: true},
		{name: "batched_window=100µs", batch: true, window: 100 * time.Microsecond},
		{name: "batched_window=250µs", batch: true, window: 250 * time.Microsecond},
	}
}

func runLoad(b *testing.B, ds []decision, verify func(context.Context, *decision) bool) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	b.ReportAllocs()
	b.SetParallelism((loadConcurrency + 1) / max(1, runtimeProcs()))
	cpu0 := cpuTime(b)
	b.ResetTimer() // RunParallel has no b.Loop form
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		local := make([]time.Duration, 0, 1024)
		i := int(time.Now().UnixNano())
		for pb.Next() {
			d := &ds[uint(i)%uint(len(ds))]
			i++
			start := time.Now()
			if !verify(ctx, d) {
				b.Error("valid decision refused")
				return
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		b.ReportMetric(float64(latencies[n*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "decisions/cpu-s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkRate is the open-loop load simulation: decisions arrive at a
// fixed rate (each in its own goroutine, as HTTP requests do), and latency
// counts from the scheduled arrival, so a slow verifier cannot hide its
// queueing (no coordinated omission). One iteration is rateDecisions
// arrivals; run it with -benchtime 1x. It reports p50 and p99 latency and
// process CPU per decision.
func BenchmarkRate(b *testing.B) {
	ds := decisions(b, 256)
	for _, rate := range []int{4000, 10000} {
		for _, v := range loadVariants() {
			b.Run(fmt.Sprintf("rate=%d/%s", rate, v.name), func(b *testing.B) {
				runRate(b, ds, rate, v.start(b))
			})
		}
	}
}

const rateDecisions = 5000

func runRate(b *testing.B, ds []decision, rate int, verify func(context.Context, *decision) bool) {
	interval := time.Second / time.Duration(rate)
	latencies := make([]time.Duration, 0, rateDecisions*b.N)
	var cpu time.Duration
	for b.Loop() {
		lat := make([]time.Duration, rateDecisions)
		var wg sync.WaitGroup
		cpu0 := cpuTime(b)
		start := time.Now()
		for i := range rateDecisions {
			due := start.Add(time.Duration(i) * interval)
			time.Sleep(time.Until(due))
			d := &ds[i%len(ds)]
			wg.Go(func() {
				if !verify(context.Background(), d) {
					b.Error("valid decision refused")
				}
				lat[i] = time.Since(due)
			})
		}
		wg.Wait()
		cpu += cpuTime(b) - cpu0
		latencies = append(latencies, lat...)
	}
	slices.Sort(latencies)
	n := len(latencies)
	b.ReportMetric(float64(latencies[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[n*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n)/1e3, "cpu-µs/decision")
	b.ReportMetric(0, "ns/op") // wall time per iteration is fixed by the rate
}
