//go:build !race

package affinity_test

const raceDetector = false
