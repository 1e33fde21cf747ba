// The benchmarks' bursts of API writes: N writes, a fixed number in flight.

/** Runs `write(i)` for i in [0, count), `inFlight` at a time; the first failure, or `stop`, ends it. */
export async function runWrites(count: number, inFlight: number, write: (i: number) => Promise<unknown>, stop?: AbortSignal): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < count) {
      stop?.throwIfAborted();
      const i = next++;
      try {
        await write(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, () => lane()));
}
