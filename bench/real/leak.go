// A Go service allocating 40 MiB/s of short-lived buffers; with "leak" it also keeps 4 MiB/s of them.
package main

import (
	"os"
	"time"
)

func main() {
	leak := len(os.Args) > 1 && os.Args[1] == "leak"
	kept := [][]byte{}
	for {
		for i := 0; i < 40; i++ {
			block := make([]byte, 100*1024)
			block[0] = 1
			if leak && i < 4 {
				kept = append(kept, block)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
