// Command slotproxy makes a Redis Cluster look like one plain Redis server to clients that know nothing
// about clusters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/topology"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "slotproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "proxy.yaml", "configuration file")
	listen := flag.String("listen", "", "client address host:port (overrides the file)")
	seeds := flag.String("seeds", "", "cluster nodes host:port,host:port (overrides the file)")
	metricsAddr := flag.String("metrics", "", "metrics address host:port, \"off\" to disable (overrides the file)")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("slotproxy", proxy.Version)
		return nil
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// load reads the file and applies the flags over it: at start, and again on SIGHUP.
	load := func() (*proxy.Config, error) {
		cfg, err := proxy.Load(*configPath)
		if errors.Is(err, fs.ErrNotExist) && !set["config"] {
			cfg, err = proxy.Default(), nil // no proxy.yaml here: built-in defaults
		}
		if err != nil {
			return nil, err
		}
		if set["listen"] {
			cfg.Listen = *listen
		}
		if set["seeds"] {
			cfg.Seeds = strings.Split(*seeds, ",")
		}
		if set["metrics"] {
			cfg.Metrics = *metricsAddr
			if cfg.Metrics == "off" {
				cfg.Metrics = ""
			}
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load()
	if err != nil {
		return err
	}

	var level slog.LevelVar
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &level})
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: &level})
	}
	log := slog.New(handler)

	backendTLS, err := cfg.BackendTLSConfig()
	if err != nil {
		return err
	}
	topo := topology.NewManager(topology.Config{
		TLS:             backendTLS,
		Seeds:           cfg.Seeds,
		RefreshInterval: cfg.RefreshInterval.D(),
		DialTimeout:     cfg.DialTimeout.D(),
		ReadTimeout:     2 * time.Second, // a node that accepts but never answers must not stall refreshes
		Username:        cfg.Username,
		Password:        cfg.Password,
		Logger:          log,
	})
	topo.Start()
	defer topo.Close()

	srv := proxy.New(cfg, topo, log)
	if cfg.Metrics != "" {
		reg := metrics.NewRegistry()
		proxy.RegisterMetrics(reg, srv)
		ms, err := metrics.Listen(cfg.Metrics, reg, srv.NotReady, log)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer ms.Close(context.Background())
		if cfg.Pprof {
			ms.EnablePprof()
		}
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	}
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	go func() {
		for range hups {
			next, err := load()
			if err != nil {
				srv.ReloadFailed()
				log.Warn("reload refused; the running configuration stays", "config", *configPath, "err", err)
				continue
			}
			changed, restart := srv.Reload(next)
			_ = level.UnmarshalText([]byte(next.LogLevel))
			topo.SetSeeds(next.Seeds)
			log.Info("configuration reloaded", "config", *configPath, "changed", strings.Join(changed, ","),
				"need_restart", strings.Join(restart, ","))
		}
	}()
	var fleet atomic.Pointer[topology.Peers]
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		drain := srv.Config().DrainTimeout.D()
		log.Info("draining", "signal", sig.String(), "drain_timeout", drain.String())
		go func() {
			sig := <-sigs
			log.Info("stopping now", "signal", sig.String())
			stop()
		}()
		if p := fleet.Load(); p != nil {
			p.Close(time.Second) // first, so that the facade and the poller move on
		}
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	if srv.Addr() == "" {
		return <-served
	}
	// Peers join once the client port listens: the others dial it as soon as they see this proxy.
	if cfg.Peers.Bind != "" {
		peers, err := srv.JoinPeers(log)
		if err != nil {
			stop()
			<-served
			return err
		}
		defer peers.Close(time.Second)
		fleet.Store(peers)
		log.Info("peers: gossiping", "addr", peers.Addr(), "name", peers.Name(), "members", peers.Members(),
			"cluster_facade", cfg.Peers.ClusterFacade)
	}
	return <-served
}
