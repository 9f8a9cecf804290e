// Command bench runs one stackless-benches workload with goroutines and
// prints one value per run (ns per operation, or KiB per goroutine for
// blocked_memory), one per line. GOMAXPROCS sets the worker count.
//
// It is built and run by the `scaling` binary (src/go.rs); see
// benches/README or `scaling --help` for the workloads.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	workload   = flag.String("w", "", "workload name")
	runs       = flag.Int("runs", 3, "number of runs")
	yieldTasks = flag.Int("yield_tasks", 100, "goroutines in yield")
	yields     = flag.Int("yields", 1000, "yields per goroutine")
	rounds     = flag.Int("rounds", 20000, "ping-pong round trips")
	ringSize   = flag.Int("ring", 1000, "ring members")
	laps       = flag.Int("laps", 100, "ring laps")
	spawnCount = flag.Int("spawn", 100000, "goroutines in spawn")
	items      = flag.Int("items", 2000, "items in skewed")
	itemNs     = flag.Int("item_ns", 10000, "ns of spinning per skewed item")
	children   = flag.Int("children", 10000, "children in fanout")
	blocked    = flag.Int("blocked", 20000, "blocked goroutines in blocked_memory")
)

var sink uint64

//go:noinline
func spin(iters uint64) uint64 {
	x := uint64(0x9E3779B97F4A7C15)
	for i := uint64(0); i < iters; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// calibrate returns the spin iterations that take about ns nanoseconds.
func calibrate(ns int) uint64 {
	const probe = 1 << 18
	var per []float64
	for i := 0; i < 11; i++ {
		t0 := time.Now()
		sink += spin(probe)
		per = append(per, float64(time.Since(t0).Nanoseconds())/probe)
	}
	sort.Float64s(per)
	it := uint64(float64(ns) / per[len(per)/2])
	if it == 0 {
		it = 1
	}
	return it
}

func yieldStorm() float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < *yieldTasks; i++ {
		wg.Add(1)
		go func() {
			for j := 0; j < *yields; j++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(*yieldTasks**yields)
}

// pingPong measures round trips between two goroutines over unbuffered
// channels. With lock set both sides are locked to their own OS thread
// (runtime.LockOSThread), which is how the cross-worker variant forces the
// two sides onto different threads.
func pingPong(lock bool) float64 {
	ping := make(chan int)
	pong := make(chan int)
	res := make(chan float64)
	go func() {
		if lock {
			runtime.LockOSThread()
		}
		for v := range ping {
			pong <- v + 1
		}
	}()
	go func() {
		if lock {
			runtime.LockOSThread()
		}
		t0 := time.Now()
		v := 0
		for i := 0; i < *rounds; i++ {
			ping <- v
			v = <-pong
		}
		el := time.Since(t0)
		close(ping)
		res <- float64(el.Nanoseconds()) / float64(*rounds)
	}()
	return <-res
}

func ring() float64 {
	n := *ringSize
	chans := make([]chan int, n)
	for i := range chans {
		chans[i] = make(chan int)
	}
	for k := 1; k < n; k++ {
		go func(k int) {
			in, out := chans[k], chans[(k+1)%n]
			for l := 0; l < *laps; l++ {
				v := <-in
				out <- v + 1
			}
		}(k)
	}
	t0 := time.Now()
	tok := 0
	for l := 0; l < *laps; l++ {
		chans[1%n] <- tok
		tok = <-chans[0]
	}
	el := time.Since(t0)
	if tok != (n-1)**laps {
		panic("ring token mismatch")
	}
	return float64(el.Nanoseconds()) / float64(n**laps)
}

func spawnStorm() float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(*spawnCount)
	for i := 0; i < *spawnCount; i++ {
		go wg.Done()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(*spawnCount)
}

func skewed(iters uint64) float64 {
	res := make(chan float64)
	go func() {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(*items)
		for i := 0; i < *items; i++ {
			go func() {
				sink += spin(iters) & 1
				wg.Done()
			}()
		}
		wg.Wait()
		res <- float64(time.Since(t0).Nanoseconds()) / float64(*items)
	}()
	return <-res
}

func fanout() float64 {
	c := make(chan int)
	t0 := time.Now()
	for i := 0; i < *children; i++ {
		go func(i int) { c <- i }(i)
	}
	sum := 0
	for i := 0; i < *children; i++ {
		sum += <-c
	}
	el := time.Since(t0)
	if sum != *children*(*children-1)/2 {
		panic("fanout sum mismatch")
	}
	return float64(el.Nanoseconds()) / float64(*children)
}

func rssKiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				panic(err)
			}
			return v
		}
	}
	panic("no VmRSS")
}

func blockedMemory() float64 {
	n := *blocked
	chans := make([]chan int, n)
	for i := range chans {
		chans[i] = make(chan int)
	}
	runtime.GC()
	before := rssKiB()
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func(c chan int) {
			started.Done()
			<-c
			done.Done()
		}(chans[i])
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	after := rssKiB()
	for _, c := range chans {
		c <- 1
	}
	done.Wait()
	return (after - before) / float64(n)
}

func main() {
	flag.Parse()
	var iters uint64
	if *workload == "skewed" {
		iters = calibrate(*itemNs)
	}
	for r := 0; r < *runs; r++ {
		var v float64
		switch *workload {
		case "yield":
			v = yieldStorm()
		case "pingpong_same":
			v = pingPong(false)
		case "pingpong_cross":
			v = pingPong(true)
		case "ring":
			v = ring()
		case "spawn":
			v = spawnStorm()
		case "skewed":
			v = skewed(iters)
		case "fanout":
			v = fanout()
		case "blocked_memory":
			v = blockedMemory()
		default:
			fmt.Fprintf(os.Stderr, "unknown workload %q\n", *workload)
			os.Exit(2)
		}
		fmt.Printf("%.3f\n", v)
	}
}
