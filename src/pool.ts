/** A concurrency limiter: at most `size` tasks run at once, the rest wait in order. */
export class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private size: number) {
    if (!(size >= 1)) throw new Error('a limiter needs a size of at least 1');
  }

  get limit(): number {
    return this.size;
  }

  /** Changes the limit of a running limiter (live tuning): more starts waiting tasks now, less lets running ones finish. */
  resize(size: number): void {
    if (!(size >= 1)) throw new Error('a limiter needs a size of at least 1');
    this.size = size;
    while (this.running + this.starting < this.size && this.waiting.length) {
      this.starting++;
      this.waiting.shift()!();
    }
  }

  private starting = 0;

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running + this.starting >= this.size || this.waiting.length) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      this.starting--;
    }
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      if (this.running + this.starting < this.size && this.waiting.length) {
        this.starting++;
        this.waiting.shift()!();
      }
    }
  }
}

/** Runs `task` over items with at most `concurrency` at once; results keep the items' order. */
export async function mapLimit<T, R>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const limiter = new Limiter(concurrency);
  return Promise.all(items.map((item, index) => limiter.run(() => task(item, index))));
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
