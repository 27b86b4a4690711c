//go:build !race

package reliability

// idleWait bounds lb.idle: how long the connections and requests a test
// leaves behind may take to end before the test counts them as leaked.
const idleWait = 5e9
