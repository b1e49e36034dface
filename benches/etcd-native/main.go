// etcd-native-bench: the write load of benches/store.rs, sent to etcd
// through its own gRPC client (clientv3), as kube-apiserver talks to etcd,
// rather than through etcd's v3 JSON gateway.
//
// It mirrors the Rust harness's run_load: N concurrent clients, client c
// talks to member c % len(endpoints) and puts distinct keys
// "bench-{c}-{n}" with a value of -value-size bytes ('v' repeated), one
// request at a time. Each put's latency is measured; throughput is the
// acknowledged puts over the wall time of the measured phase. A short
// warm-up (-warmup, not measured) runs first, so connections are up and
// etcd is warm before timing starts.
//
// Clients: kube-apiserver creates one clientv3.Client and shares it among
// all its requests (gRPC multiplexes concurrent RPCs as HTTP/2 streams over
// one connection). We do the same, with one shared clientv3.Client per
// member (each dialled to that member only) so the goroutines assigned to a
// member multiplex over one connection, as the Rust harness pins client c
// to member c % 3. (kube-apiserver hands all endpoints to its one client,
// whose balancer spreads RPCs over them; pinning keeps the spread identical
// to the JSON-gateway run.)
//
// Prints one JSON line:
// {"writes_per_sec":..., "p50_us":..., "p99_us":..., "errors":..., "acked":...}
//
// Build (GOPATH mode against Debian's golang-etcd-server-dev):
// scripts/bench-deps.sh.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.etcd.io/etcd/pkg/transport"
	"go.uber.org/zap"
)

type result struct {
	WritesPerSec float64 `json:"writes_per_sec"`
	P50Us        float64 `json:"p50_us"`
	P99Us        float64 `json:"p99_us"`
	Errors       uint64  `json:"errors"`
	Acked        int     `json:"acked"`
}

type worker struct {
	lat    []time.Duration
	errors uint64
	n      uint64
}

func main() {
	endpoints := flag.String("endpoints", "", "comma-separated https URLs of the etcd members")
	cacert := flag.String("cacert", "", "CA certificate that signed the members' certificates")
	cert := flag.String("cert", "", "client certificate (only if etcd requires client-cert auth)")
	key := flag.String("key", "", "client key (only if etcd requires client-cert auth)")
	clients := flag.Int("clients", 1, "concurrent clients (each one put at a time)")
	duration := flag.Duration("duration", 6*time.Second, "measured run")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up before the run")
	valueSize := flag.Int("value-size", 1024, "value size in bytes")
	opTimeout := flag.Duration("op-timeout", 30*time.Second, "timeout of one put (counted as an error)")
	flag.Parse()

	eps := []string{}
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 || *clients < 1 {
		fail("need -endpoints and -clients >= 1")
	}

	var tlsCfg *tls.Config
	if *cacert != "" || *cert != "" {
		info := transport.TLSInfo{TrustedCAFile: *cacert, CertFile: *cert, KeyFile: *key}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			fail("tls: %v", err)
		}
	}

	// One shared client per member (see the comment at the top). Keep-alive
	// and dial timeout as kube-apiserver sets them.
	logCfg := logutil.DefaultZapLoggerConfig // to stderr
	logCfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	cls := make([]*clientv3.Client, len(eps))
	for i, ep := range eps {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:            []string{ep},
			TLS:                  tlsCfg,
			DialTimeout:          20 * time.Second,
			DialKeepAliveTime:    30 * time.Second,
			DialKeepAliveTimeout: 10 * time.Second,
			LogConfig:            &logCfg,
		})
		if err != nil {
			fail("connect %s: %v", ep, err)
		}
		defer c.Close()
		cls[i] = c
	}

	value := strings.Repeat("v", *valueSize)
	var errOnce sync.Once
	put := func(c int, w *worker) (time.Duration, bool) {
		k := fmt.Sprintf("bench-%d-%d", c, w.n)
		w.n++
		ctx, cancel := context.WithTimeout(context.Background(), *opTimeout)
		defer cancel()
		t := time.Now()
		_, err := cls[c%len(cls)].Put(ctx, k, value)
		d := time.Since(t)
		if err != nil {
			errOnce.Do(func() { fmt.Fprintf(os.Stderr, "etcd-native-bench: first error: %v\n", err) })
			return d, false
		}
		return d, true
	}

	workers := make([]*worker, *clients)
	for c := range workers {
		workers[c] = &worker{}
	}

	// Warm-up: every client puts until the warm-up ends; nothing is kept.
	var wg sync.WaitGroup
	warmEnd := time.Now().Add(*warmup)
	for c := range workers {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			w := workers[c]
			for time.Now().Before(warmEnd) {
				put(c, w)
			}
		}(c)
	}
	wg.Wait()

	// Measured run: all clients start together; each stops issuing puts
	// once the duration has passed; the clock stops when the last returns.
	start := time.Now()
	for c := range workers {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			w := workers[c]
			for time.Since(start) < *duration {
				if d, ok := put(c, w); ok {
					w.lat = append(w.lat, d)
				} else {
					w.errors++
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var lat []time.Duration
	var errors uint64
	for _, w := range workers {
		lat = append(lat, w.lat...)
		errors += w.errors
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// Same percentile rule as the Rust harness: index round((len-1)*p).
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(float64(len(lat)-1)*p + 0.5)
		return float64(lat[i].Nanoseconds()) / 1000.0
	}
	out, _ := json.Marshal(result{
		WritesPerSec: float64(len(lat)) / elapsed.Seconds(),
		P50Us:        pct(0.5),
		P99Us:        pct(0.99),
		Errors:       errors,
		Acked:        len(lat),
	})
	fmt.Println(string(out))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "etcd-native-bench: "+format+"\n", args...)
	os.Exit(2)
}
