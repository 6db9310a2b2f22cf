// A Node.js service allocating 40 MiB/s of short-lived buffers; with "leak" it also keeps 4 MiB/s of them.
const leak = process.argv[2] === "leak";
const kept = [];
setInterval(() => {
  for (let i = 0; i < 40; i++) {
    const block = Buffer.alloc(100 * 1024, 1);
    if (leak && i < 4) kept.push(block);
  }
}, 100);
