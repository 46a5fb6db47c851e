// Deno alone, for the bench's boot scenario (bench/daemon.ts, kind "runtime"): print one line,
// then idle. Its start to that line and its idle memory are the floor every Deno program pays
// before its first module of its own, so the part of the daemon's boot and RSS ratios that no
// code of this project can remove.
console.log("ready");
setInterval(() => {}, 2 ** 30);
