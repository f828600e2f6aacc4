package service

import (
	"context"
	"fmt"
	"os"
	"time"
)

// leaseTTL is how long a collection's lease lasts unless renewed; the
// collection renews it every leaseTTL/3, so a collector that dies frees it
// within leaseTTL, or at once for the next collector on the same host,
// which sees that the holder's process is gone.
const leaseTTL = 2 * time.Minute

// holdLease takes the named lease for this process and keeps renewing it
// until the returned function is called, which releases it. It returns
// ErrCollecting if another live process holds it.
func (s *Service) holdLease(ctx context.Context, name string) (release func(), err error) {
	holder := leaseHolder()
	ok, err := s.meta.TryLease(ctx, name, holder, leaseTTL)
	if err != nil {
		return nil, internal(err, "take the %s lease", name)
	}
	if !ok {
		if ok, err = s.takeFromDead(ctx, name, holder); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, ErrCollecting
	}
	stop := renewEvery(ctx, leaseTTL/3, func(ctx context.Context) {
		if ok, err := s.meta.TryLease(ctx, name, holder, leaseTTL); err != nil || !ok {
			s.log.Error("renew the lease", "lease", name, "held", ok, "err", err)
		}
	})
	return func() {
		stop()
		if err := s.meta.ReleaseLease(context.WithoutCancel(ctx), name, holder); err != nil {
			s.log.Error("release the lease", "lease", name, "err", err)
		}
	}, nil
}

// takeFromDead takes the lease if its holder is a process of this host
// that no longer runs (killed in the middle of a collection, say).
func (s *Service) takeFromDead(ctx context.Context, name, holder string) (bool, error) {
	other, err := s.meta.LeaseHolder(ctx, name)
	if err != nil {
		return false, internal(err, "look up the %s lease", name)
	}
	if other == "" || !deadHere(other) {
		return other == "" && s.retryLease(ctx, name, holder), nil
	}
	s.log.Warn("taking over the lease of a process that is gone", "lease", name, "holder", other)
	if err := s.meta.ReleaseLease(ctx, name, other); err != nil {
		return false, internal(err, "release the %s lease of %s", name, other)
	}
	return s.retryLease(ctx, name, holder), nil
}

// retryLease tries once more to take a lease that has just been freed.
func (s *Service) retryLease(ctx context.Context, name, holder string) bool {
	ok, err := s.meta.TryLease(ctx, name, holder, leaseTTL)
	return err == nil && ok
}

// leaseHolder names this process as a lease holder: host:pid.
func leaseHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// renewEvery calls renew every interval, with a context that ctx's end
// does not cancel, until the returned function is called; that function
// returns once renew has returned for the last time.
func renewEvery(ctx context.Context, every time.Duration, renew func(context.Context)) (stop func()) {
	ctx = context.WithoutCancel(ctx)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				renew(ctx)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
