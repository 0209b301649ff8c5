package gossipsim_test

import (
	"math"
	"testing"

	"github.com/synod-io/synod/sim/gossipsim"
)

// TestDetectionFigures checks, loosely, the detection figures against
// SWIM: a crashed member is first pinged within about a period, suspected
// a period after that, declared dead after the suspicion timeout (at
// least α·max(1, log10 N) = 5 periods here), known dead by all soon
// after; and each member sends a constant number of messages per period.
func TestDetectionFigures(t *testing.T) {
	for _, n := range []int{10, 50} {
		for _, lifeguard := range []bool{true, false} {
			d, err := gossipsim.Detection(n, 0.01, lifeguard, 8, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("N=%d lifeguard=%v: first probe %.2f, suspicion %.2f, dead %.1f, all know %.1f (worst %.0f) periods; %.2f messages per member per period",
				n, lifeguard, d.FirstProbe, d.FirstSuspect, d.FirstDead, d.AllKnow, d.AllKnowMax, d.MessagesPerMemberPeriod)
			minDead := 5 * math.Max(1, math.Log10(float64(n)))
			switch {
			case d.Trials != 8:
				t.Errorf("N=%d: %d trials", n, d.Trials)
			case d.FirstProbe < 0 || d.FirstProbe > 3:
				t.Errorf("N=%d: first probe of a crashed member after %.2f periods; want about one", n, d.FirstProbe)
			case d.FirstSuspect < d.FirstProbe+0.5 || d.FirstSuspect > d.FirstProbe+3:
				t.Errorf("N=%d: first suspicion %.2f periods after the crash, first probe %.2f; want about a period between", n, d.FirstSuspect, d.FirstProbe)
			case d.FirstDead < d.FirstSuspect+minDead-0.5:
				t.Errorf("N=%d: declared dead %.1f periods after the crash, before the suspicion timeout of %.0f periods", n, d.FirstDead, minDead)
			case d.AllKnow < d.FirstDead || d.AllKnowMax > d.FirstDead+20:
				t.Errorf("N=%d: every member knew after %.1f periods (worst %.0f); first declared dead after %.1f", n, d.AllKnow, d.AllKnowMax, d.FirstDead)
			case d.MessagesPerMemberPeriod < 1.8 || d.MessagesPerMemberPeriod > 4:
				t.Errorf("N=%d: %.2f messages per member per period; SWIM sends about two (a ping and an ack)", n, d.MessagesPerMemberPeriod)
			}
		}
	}
}

// TestLifeguardFalsePositives: with one slow member and a fast detector
// (α = 2), plain SWIM declares live members dead again and again;
// Lifeguard (nearly) never.
func TestLifeguardFalsePositives(t *testing.T) {
	on, err := gossipsim.FalsePositives(10, 0.01, true, 2, 30, 1)
	if err != nil {
		t.Fatal(err)
	}
	off, err := gossipsim.FalsePositives(10, 0.01, false, 2, 30, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one slow member among 10, α = 2, 30 simulated minutes: %d false positives with Lifeguard, %d without (%d of them about the slow member)",
		on.Incidents, off.Incidents, off.AboutSlow)
	if on.Incidents > 2 || off.Incidents < 10 || off.AboutSlow == 0 {
		t.Errorf("false positives: %d with Lifeguard, %d without; want (nearly) none with and many without", on.Incidents, off.Incidents)
	}
}

// TestPartitionHealFigures: after a partition in halves with writes on
// both sides, the membership becomes whole again and the replicas
// converge (to the model's last writes) within a few anti-entropy
// intervals.
func TestPartitionHealFigures(t *testing.T) {
	for _, n := range []int{10, 40} {
		p, err := gossipsim.PartitionHeal(n, 0.01, 60, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("N=%d: %d writes while apart; membership whole %.1f s and replicas converged %.1f s (%.1f anti-entropy intervals) after healing",
			n, p.Writes, p.MembershipSeconds, p.StoreSeconds, p.AntiEntropyIntervals)
		if p.Writes == 0 || p.StoreSeconds <= 0 || p.AntiEntropyIntervals > 20 {
			t.Errorf("N=%d: %+v", n, p)
		}
	}
}
