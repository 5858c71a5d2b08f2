package baseline

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error; nil: valid
	}{
		{"zero learning is allowed", func(c *Config) { c.LearningPeriod = 0 }, nil},
		{"hard boundary", func(c *Config) { c.HardBoundary = true }, nil},
		{"negative learning", func(c *Config) { c.LearningPeriod = -time.Hour }, []string{"learning period -1h0m0s must not be negative"}},
		{"negative stability", func(c *Config) { c.StabilityWindow = -1 }, []string{"stability window"}},
		{"negative max", func(c *Config) { c.MaxLearning = -1 }, []string{"max learning -1ns must not be negative", "shorter than the learning period"}},
		{"max below learning", func(c *Config) { c.MaxLearning = time.Hour }, []string{"max learning 1h0m0s is shorter than the learning period 24h0m0s"}},
		{"zero window", func(c *Config) { c.Window = 0 }, []string{"volume window 0s must be positive"}},
		{"v4 bits 0", func(c *Config) { c.FoldIPv4Bits = 0 }, []string{"IPv4 fold prefix /0 out of range 1-32"}},
		{"v4 bits 33", func(c *Config) { c.FoldIPv4Bits = 33 }, []string{"/33 out of range"}},
		{"v6 bits 129", func(c *Config) { c.FoldIPv6Bits = 129 }, []string{"IPv6 fold prefix /129 out of range 1-128"}},
		{"max destinations", func(c *Config) { c.MaxDestinations = 0 }, []string{"max destinations 0 must be at least 1"}},
		{"min samples", func(c *Config) { c.MinSamples = -1 }, []string{"min samples -1"}},
		{"several at once", func(c *Config) { c.Window = -1; c.FoldIPv6Bits = 0 }, []string{"volume window", "IPv6 fold prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewSetFillsUnusableZeroFields(t *testing.T) {
	s := NewSet(Config{LearningPeriod: time.Hour, MaxLearning: time.Hour})
	c := s.Config()
	d := DefaultConfig()
	if c.Window != d.Window || c.MaxDestinations != d.MaxDestinations || c.FoldIPv4Bits != 32 || c.FoldIPv6Bits != 128 {
		t.Errorf("NewSet(partial config).Config() = %+v, want defaults for window, cap and fold bits", c)
	}
	if c.LearningPeriod != time.Hour {
		t.Errorf("learning period changed to %v", c.LearningPeriod)
	}
}
