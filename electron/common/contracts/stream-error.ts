/** Bytes on a console stream that break the format (stream.ts, frame-codec.ts). */
export class StreamError extends Error {}
