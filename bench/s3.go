//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Target is an S3 endpoint with credentials and a bucket.
type s3Target struct {
	name   string
	client *minio.Client
	bucket string
}

func newS3(name, url, id, secret, bucket string) (*s3Target, error) {
	c, err := minio.New(strings.TrimPrefix(url, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(id, secret, ""), Region: "us-east-1",
	})
	if err != nil {
		return nil, err
	}
	return &s3Target{name: name, client: c, bucket: bucket}, nil
}

// s3Measures compares larder's S3 API with MinIO's, the same client
// (minio-go) driving both: small-object PUT and GET operations per second,
// large-object MB/s.
func s3Measures(ctx context.Context, o options, r *report) error {
	os.Unsetenv("AWS_CA_BUNDLE")
	l, _, err := startLarder(ctx, o.larder, filepath.Join(o.work, "larder-s3"))
	if err != nil {
		return err
	}
	defer l.stop()
	out, err := l.cli(ctx, "token", "create", "--cache", "main", "--perm", "write", "--s3")
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return fmt.Errorf("token create --s3 printed %q", out)
	}
	ls3, err := newS3("larder", l.URL, f[0], f[1], "main")
	if err != nil {
		return err
	}
	addr := freeAddr()
	mp, _, err := start(ctx, "minio", "http://"+addr, "/minio/health/live",
		[]string{"MINIO_ROOT_USER=benchadmin", "MINIO_ROOT_PASSWORD=benchsecret", "MINIO_BROWSER=off"},
		"minio", "server", filepath.Join(o.work, "minio-data"), "--address", addr, "--quiet")
	if err != nil {
		return fmt.Errorf("%w (bench/run installs minio into .tools/bin)", err)
	}
	defer mp.stop()
	ms3, err := newS3("minio", mp.URL, "benchadmin", "benchsecret", "main")
	if err != nil {
		return err
	}
	if err := ms3.client.MakeBucket(ctx, "main", minio.MakeBucketOptions{}); err != nil {
		return err
	}
	large := int64(1 << 30)
	if o.quick {
		large = 256 << 20
	}
	dur := time.Duration(o.seconds) * time.Second
	for run := range o.runs {
		fmt.Printf("S3, run %d…\n", run+1)
		var put, get, lput, lget [2]float64
		for i, t := range []*s3Target{ls3, ms3} {
			prefix := fmt.Sprintf("small/%d/", run)
			n, err := smallPuts(ctx, t, prefix, 16, dur)
			if err != nil {
				return err
			}
			put[i] = float64(n) / dur.Seconds()
			g, err := smallGets(ctx, t, prefix, n, 16, dur)
			if err != nil {
				return err
			}
			get[i] = float64(g) / dur.Seconds()
			if lput[i], lget[i], err = largeObject(ctx, t, fmt.Sprintf("large/%d", run), large); err != nil {
				return err
			}
		}
		r.add("S3 PUT 4 KiB objects, 16 clients", "ops/s", "MinIO", "≥ 1.0", put[0], put[1])
		r.add("S3 GET 4 KiB objects, 16 clients", "ops/s", "MinIO", "≥ 1.0", get[0], get[1])
		r.add(fmt.Sprintf("S3 PUT %d MiB object", large>>20), "MB/s", "MinIO", "", lput[0], lput[1])
		r.add(fmt.Sprintf("S3 GET %d MiB object", large>>20), "MB/s", "MinIO", "", lget[0], lget[1])
	}
	return nil
}

// smallPuts uploads 4 KiB objects under prefix with c clients for d and
// returns how many were stored (keys prefix + n).
func smallPuts(ctx context.Context, t *s3Target, prefix string, c int, d time.Duration) (int, error) {
	body := make([]byte, 4096)
	_, _ = rand.Read(body)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	began := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(began) < d {
				k := next.Add(1) - 1
				_, err := t.client.PutObject(ctx, t.bucket, fmt.Sprintf("%s%d", prefix, k), bytes.NewReader(body),
					int64(len(body)), minio.PutObjectOptions{ContentType: "application/octet-stream"})
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("%s: PUT: %w", t.name, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return int(next.Load()), firstErr
}

// smallGets reads random objects of the n under prefix with c clients for
// d, checking each is 4 KiB, and returns how many it read.
func smallGets(ctx context.Context, t *s3Target, prefix string, n, c int, d time.Duration) (int, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	began := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(began) < d {
				k, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
				obj, err := t.client.GetObject(ctx, t.bucket, fmt.Sprintf("%s%d", prefix, k.Int64()), minio.GetObjectOptions{})
				var got int64
				if err == nil {
					got, err = io.Copy(io.Discard, obj)
					obj.Close()
				}
				if err == nil && got != 4096 {
					err = fmt.Errorf("%d bytes", got)
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("%s: GET: %w", t.name, err) })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(done.Load()), firstErr
}

// largeObject uploads size random bytes under key and reads them back,
// and returns both rates in MB/s.
func largeObject(ctx context.Context, t *s3Target, key string, size int64) (put, get float64, err error) {
	began := time.Now()
	_, err = t.client.PutObject(ctx, t.bucket, key, io.LimitReader(rand.Reader, size), size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 64 << 20})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: PUT %s: %w", t.name, key, err)
	}
	put = float64(size) / 1e6 / time.Since(began).Seconds()
	began = time.Now()
	obj, err := t.client.GetObject(ctx, t.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer obj.Close()
	n, err := io.Copy(io.Discard, obj)
	if err != nil || n != size {
		return 0, 0, fmt.Errorf("%s: GET %s: %d bytes of %d: %v", t.name, key, n, size, err)
	}
	return put, float64(size) / 1e6 / time.Since(began).Seconds(), nil
}
