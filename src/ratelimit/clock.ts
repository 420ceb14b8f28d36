/** Milliseconds from a monotonic clock; tests pass a fake one. */
export type Clock = () => number;

export const monotonicClock: Clock = () => performance.now();
