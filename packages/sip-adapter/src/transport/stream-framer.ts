// Splits a TCP byte stream into SIP messages (RFC 3261 §18.3): the header block up to the blank
// line, then Content-Length bytes of body. CRLFs between messages are keepalives (RFC 5626
// §4.4.1); a double CRLF is a ping the connection answers with one CRLF.

import { EventEmitter } from 'node:events';
import { MAX_STREAM_MESSAGE_BYTES } from './constants.js';
import { UnframeableError, type UnframeableReason } from './errors.js';
import { CRLF, CRLFCRLF, contentLengthOf, looksLikeSipStartLine } from './sip-bytes.js';

export interface StreamFramerOptions {
  /** Largest message, header block and body (default MAX_STREAM_MESSAGE_BYTES). */
  maxMessageBytes?: number;
}

export interface StreamFramerEvents {
  /** One whole SIP message (a copy the listener may keep). */
  message: [data: Buffer];
  /** A double-CRLF ping arrived between messages: answer with a single CRLF. */
  ping: [];
  /** A single CRLF came before a message (a pong, or padding): nothing to do. */
  keepalive: [];
  /** The stream cannot be resynchronised; the framer ignores all further input. */
  error: [error: UnframeableError];
}

const INITIAL_BUFFER_BYTES = 4096;
const CR = 0x0d;
const LF = 0x0a;

export class StreamFramer extends EventEmitter<StreamFramerEvents> {
  private readonly maxMessageBytes: number;
  private buf = Buffer.allocUnsafe(INITIAL_BUFFER_BYTES);
  /** Unconsumed bytes are buf[start, end). */
  private start = 0;
  private end = 0;
  /** Line feeds seen between messages since the last one; two make a ping. */
  private boundaryLfs = 0;
  /** Whether the current message's first byte has arrived (CRLFs before it are keepalives). */
  private inMessage = false;
  private startLineChecked = false;
  /** Offsets (from start) where the searches for the start line's and the headers' end resume. */
  private lineScanFrom = 0;
  private headerScanFrom = 0;
  /** Length of the header block including the blank line, once found; then the body's length. */
  private headerBytes = -1;
  private bodyBytes = 0;
  private dead = false;

  constructor(options: StreamFramerOptions = {}) {
    super();
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_STREAM_MESSAGE_BYTES;
  }

  /** Bytes held for an incomplete message. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** True once the stream was found unframeable. */
  get failed(): boolean {
    return this.dead;
  }

  push(chunk: Uint8Array): void {
    if (this.dead || chunk.length === 0) return;
    this.append(chunk);
    this.drain();
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      // A large message has passed: give its buffer back.
      if (this.buf.length > 4 * INITIAL_BUFFER_BYTES) {
        this.buf = Buffer.allocUnsafe(INITIAL_BUFFER_BYTES);
      }
    }
  }

  private append(chunk: Uint8Array): void {
    const held = this.end - this.start;
    if (this.end + chunk.length > this.buf.length) {
      if (held + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, held + chunk.length));
        this.buf.copy(next, 0, this.start, this.end);
        this.buf = next;
      }
      this.start = 0;
      this.end = held;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  private drain(): void {
    while (!this.dead && this.start < this.end) {
      if (!this.inMessage && !this.skipKeepalives()) return;
      if (this.headerBytes < 0 && !this.findHeaders()) return;
      const total = this.headerBytes + this.bodyBytes;
      if (this.end - this.start < total) return;
      const message = Buffer.from(this.buf.subarray(this.start, this.start + total));
      this.start += total;
      this.inMessage = false;
      this.startLineChecked = false;
      this.lineScanFrom = 0;
      this.headerScanFrom = 0;
      this.headerBytes = -1;
      this.bodyBytes = 0;
      this.emit('message', message);
    }
  }

  /** Consumes CRLFs before a message; true when a message's first byte is next. */
  private skipKeepalives(): boolean {
    while (this.start < this.end) {
      const byte = this.buf[this.start];
      if (byte !== CR && byte !== LF) {
        this.inMessage = true;
        // A lone CRLF is known to be no ping only once the next message starts.
        if (this.boundaryLfs === 1) this.emit('keepalive');
        this.boundaryLfs = 0;
        return !this.dead;
      }
      this.start++;
      if (byte === LF && ++this.boundaryLfs === 2) {
        this.boundaryLfs = 0;
        this.emit('ping');
        if (this.dead) return false;
      }
    }
    return false;
  }

  /** Looks for the end of the header block; true once it and Content-Length are known. */
  private findHeaders(): boolean {
    const held = this.buf.subarray(this.start, this.end);
    if (!this.startLineChecked) {
      const lineEnd = held.indexOf(CRLF, this.lineScanFrom);
      if (lineEnd >= 0) {
        if (!looksLikeSipStartLine(held.toString('latin1', 0, lineEnd))) {
          return this.fail('not-sip', 'the stream does not start with a SIP start line', held);
        }
        this.startLineChecked = true;
      } else {
        this.lineScanFrom = Math.max(0, held.length - 1);
      }
    }
    const found = held.indexOf(CRLFCRLF, this.headerScanFrom);
    if (found < 0 || found + 4 > this.maxMessageBytes) {
      if (held.length > this.maxMessageBytes || found >= 0) {
        return this.fail(
          'header-too-large',
          `header block longer than ${this.maxMessageBytes} bytes`,
          held.subarray(0, this.maxMessageBytes),
        );
      }
      this.headerScanFrom = Math.max(0, held.length - 3);
      return false;
    }
    const headers = held.subarray(0, found + 4);
    const cl = contentLengthOf(held.toString('latin1', 0, found));
    if (cl.kind === 'missing') {
      return this.fail('missing-content-length', 'no Content-Length on a stream', headers);
    }
    if (cl.kind === 'invalid') {
      return this.fail('invalid-content-length', `Content-Length "${cl.value}"`, headers);
    }
    if (found + 4 + cl.length > this.maxMessageBytes) {
      return this.fail(
        'body-too-large',
        `a message of ${found + 4 + cl.length} bytes (Content-Length ${cl.length}) is over the ${this.maxMessageBytes}-byte limit`,
        headers,
      );
    }
    this.headerBytes = found + 4;
    this.bodyBytes = cl.length;
    return true;
  }

  private fail(reason: UnframeableReason, message: string, partialHeaders: Buffer): false {
    this.dead = true;
    const headers = Buffer.from(partialHeaders);
    this.buf = Buffer.alloc(0);
    this.start = 0;
    this.end = 0;
    this.emit('error', new UnframeableError(reason, `unframeable SIP stream: ${message}`, headers));
    return false;
  }
}
