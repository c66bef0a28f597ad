import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { apiFetch, TEST_API_KEY } from '../helpers/api-client.ts';
import { copyClip, ffmpegHoldingPreviews, VTEST_AVI } from '../helpers/media-fixtures.ts';
import { waitFor } from '../helpers/service.ts';
import { Stack } from '../helpers/stack.ts';

/** Debian's Chromium (scripts/test installs it); playwright-core drives it and never downloads a browser. */
const CHROMIUM = '/usr/bin/chromium';
/** Where the test saves its screenshots (ignored by git; a few are copied to docs/screenshots/ for the README). */
const SCREENSHOTS = path.resolve('test-output', 'screenshots');
const CLIP_SECONDS = 8;
const SAMPLE_FPS = 2;

interface ApiFrame {
  frameIndex: number;
  ptsMs: number;
  detections: Array<{ className: string; confidence: number; box: [number, number, number, number] }>;
}

interface DrawnBox {
  title: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The web app as a person uses it, in headless Chromium, against a real deployment: API and worker
 * processes, their own Redis and PostgreSQL database, ffmpeg and the YOLOv8n model. One video goes through
 * it all: sign-in, upload through the page, live progress to completed, playback with the detection boxes
 * over the people, filters, the timeline, the downloads, the list and the dashboard.
 */
describe("web app end to end in Debian's Chromium (real API, worker, Redis, PostgreSQL, model)", function () {
  this.timeout(600_000);
  let tmp: string;
  let stack: Stack;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let clip: string;
  let videoId: string;
  let frames: ApiFrame[];
  const problems: string[] = [];
  const foreignRequests: string[] = [];

  before(async function () {
    await fs.access(CHROMIUM).catch(() => assert.fail(`${CHROMIUM} is missing: scripts/test installs Debian's chromium package`));
    // Up to date: nothing to do; otherwise the page under test is built from the current sources.
    await execa('bash', ['scripts/build-web']);
    await fs.mkdir(SCREENSHOTS, { recursive: true });
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vidsense-e2e-'));
    // Pedestrians, in vtest.avi's own codec (msmpeg4v3 in AVI), which browsers cannot play: the page plays the preview.
    clip = await copyClip(VTEST_AVI, CLIP_SECONDS, path.join(tmp, 'pedestrians.avi'));
    stack = await Stack.start(tmp);
    await stack.startApi();
    // The preview's ffmpeg waits for the file `release-preview`, so the page is seen with the video completed
    // and its preview still being made (it is made after extraction, and the video does not wait for it).
    await stack.startWorker({ FFMPEG_PATH: await ffmpegHoldingPreviews(tmp, path.join(tmp, 'release-preview')) });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-gpu'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true, timezoneId: 'Europe/Berlin', locale: 'en-GB' });
    page = await context.newPage();
    page.on('console', (message) => {
      // Chromium logs every 4xx answer as a console error; the 401s of signed-out requests are expected here.
      if (message.type() === 'error' && !/status of 401 \(Unauthorized\)/.test(message.text())) problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('request', (request) => {
      if (!request.url().startsWith(stack.baseUrl) && !request.url().startsWith('blob:') && !request.url().startsWith('data:')) foreignRequests.push(request.url());
    });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  const shot = (name: string, options: { fullPage?: boolean } = {}) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), ...options });
  const overlayTitles = () => page.locator('svg.overlay g.box > title').allTextContents();
  const api = async <T>(pathAndQuery: string): Promise<T> => {
    const res = await apiFetch(`${stack.baseUrl}${pathAndQuery}`);
    assert.equal(res.status, 200, `${pathAndQuery}: ${await res.clone().text()}`);
    return (await res.json()) as T;
  };

  /** The boxes drawn now, in viewport pixels, with their titles. */
  async function drawnBoxes(): Promise<DrawnBox[]> {
    return page.locator('svg.overlay g.box').evaluateAll((groups) =>
      groups.map((group) => {
        const rect = group.querySelector('rect')!.getBoundingClientRect();
        return { title: group.querySelector('title')!.textContent ?? '', x: rect.x, y: rect.y, width: rect.width, height: rect.height };
      }),
    );
  }

  /** Where the API's boxes of a frame belong on the <video> element: source pixels scaled onto its letterboxed picture. */
  async function expectedBoxes(frame: ApiFrame, keep: (detection: ApiFrame['detections'][number]) => boolean): Promise<DrawnBox[]> {
    const element = await page.locator('.player video').evaluate((video: HTMLVideoElement) => {
      const box = video.getBoundingClientRect();
      return { x: box.x, y: box.y, width: video.clientWidth, height: video.clientHeight, videoWidth: video.videoWidth, videoHeight: video.videoHeight };
    });
    const source = (await api<{ source: { width: number; height: number } }>(`/videos/${videoId}`)).source;
    const scale = Math.min(element.width / element.videoWidth, element.height / element.videoHeight);
    const picture = { width: element.videoWidth * scale, height: element.videoHeight * scale };
    const left = element.x + (element.width - picture.width) / 2;
    const top = element.y + (element.height - picture.height) / 2;
    return frame.detections.filter(keep).map(({ className, confidence, box: [x1, y1, x2, y2] }) => ({
      title: `${className} ${confidence.toFixed(2)}`,
      x: left + (x1 / source.width) * picture.width,
      y: top + (y1 / source.height) * picture.height,
      width: ((x2 - x1) / source.width) * picture.width,
      height: ((y2 - y1) / source.height) * picture.height,
    }));
  }

  const byPosition = (a: DrawnBox, b: DrawnBox) => a.x - b.x || a.y - b.y || a.title.localeCompare(b.title);
  function assertSameBoxes(drawn: DrawnBox[], expected: DrawnBox[]): void {
    assert.equal(drawn.length, expected.length, `${drawn.length} boxes drawn, ${expected.length} expected`);
    const sortedDrawn = [...drawn].sort(byPosition);
    const sortedExpected = [...expected].sort(byPosition);
    for (const [index, box] of sortedDrawn.entries()) {
      const want = sortedExpected[index]!;
      assert.equal(box.title, want.title);
      for (const side of ['x', 'y', 'width', 'height'] as const) {
        assert.ok(Math.abs(box[side] - want[side]) < 1, `${box.title}: ${side} ${box[side].toFixed(2)} drawn, ${want[side].toFixed(2)} expected`);
      }
    }
  }

  /** Pauses the player on a detected frame and waits for the overlay to draw that frame. */
  async function showFrame(frame: ApiFrame): Promise<void> {
    await page.locator('.player video').evaluate(async (video: HTMLVideoElement, seconds: number) => {
      video.pause();
      const seeked = new Promise((resolve) => video.addEventListener('seeked', resolve, { once: true }));
      // A hair past the frame's time, so rounding cannot land on the source frame before it.
      video.currentTime = seconds;
      await seeked;
    }, frame.ptsMs / 1000 + 0.01);
    await page.locator(`svg.overlay[data-pts-ms="${frame.ptsMs}"]`).waitFor();
  }

  const setMinimumConfidence = (value: number) =>
    page.getByLabel('Minimum confidence').evaluate((input: HTMLInputElement, next: number) => {
      input.value = String(next);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }, value);

  it('signs in with the key of the bootstrap URL, and takes the key out of the address bar', async () => {
    await page.goto(`${stack.baseUrl}/#/login?key=${encodeURIComponent(TEST_API_KEY)}`);
    await page.getByRole('heading', { name: 'Videos' }).waitFor();
    assert.ok(!page.url().includes(TEST_API_KEY), `the key is still in ${page.url()}`);
    assert.ok(!(await page.evaluate(() => window.location.href)).includes('key='));
    const [cookie] = (await context.cookies()).filter((entry) => entry.name === 'vidsense_session');
    assert.ok(cookie, 'a session cookie');
    assert.deepEqual([cookie.httpOnly, cookie.sameSite], [true, 'Strict']);
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read the session cookie');
  });

  it('signs out (the session is revoked), refuses a wrong key, and signs in through the form', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    await shot('sign-in');
    assert.equal(await page.evaluate(async () => (await fetch('/auth/me')).status), 401);
    await page.getByLabel('API key').fill('not-a-key-of-this-service');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
    await page.getByLabel('API key').fill(TEST_API_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Videos' }).waitFor();
    assert.equal(await page.evaluate(async () => (await fetch('/auth/me')).status), 200);
  });

  it('uploads a video through the page with an upload progress bar, then shows its page', async () => {
    await page.getByRole('link', { name: 'Upload', exact: true }).click();
    await page.getByLabel('Video file').setInputFiles(clip);
    await page.getByLabel('Frames per second').selectOption(String(SAMPLE_FPS));
    // Upload throughput held to 256 KiB/s, so the progress bar is seen moving on the way.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
    const seen = page.evaluate(
      () =>
        new Promise<number[]>((resolve) => {
          const values = new Set<number>();
          const bar = document.querySelector<HTMLProgressElement>('progress[aria-label="Upload progress"]')!;
          const timer = setInterval(() => {
            if (!bar.isConnected) {
              clearInterval(timer);
              resolve([...values]);
            } else values.add(bar.value);
          }, 20);
        }),
    );
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForURL(/#\/videos\/[0-9a-f-]{36}$/);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    videoId = /#\/videos\/([0-9a-f-]{36})$/.exec(page.url())![1]!;
    const values = await seen;
    assert.ok(values.some((value) => value > 0 && value < 100), `upload progress values seen: ${values.join(', ')}`);
    const video = await api<{ originalName: string; sizeBytes: number; sampleFps: number }>(`/videos/${videoId}`);
    assert.deepEqual([video.originalName, video.sizeBytes, video.sampleFps], ['pedestrians.avi', (await fs.stat(clip)).size, SAMPLE_FPS]);
  });

  it('shows live progress until the video is completed', async () => {
    await page.getByRole('heading', { name: 'pedestrians.avi' }).waitFor();
    await shot('video-processing');
    await page.locator('.page-header .status', { hasText: 'completed' }).waitFor({ timeout: 300_000 });
    const video = await api<{ status: string; framesTotal: number; framesDone: number; framesFailed: number }>(`/videos/${videoId}`);
    assert.deepEqual([video.status, video.framesTotal, video.framesFailed], ['completed', CLIP_SECONDS * SAMPLE_FPS, 0]);
    const progress = page.getByRole('progressbar', { name: 'Processing progress' });
    assert.equal(await progress.evaluate((bar: HTMLProgressElement) => bar.value), 100);
    await page.getByText(`${video.framesTotal} / ${video.framesTotal} frames (100%)`).waitFor();
    // Completed before its preview: the page says it is coming, then plays it once made (it reads the video again).
    assert.equal((await api<{ previewPending: boolean }>(`/videos/${videoId}`)).previewPending, true);
    await page.locator('.no-preview', { hasText: 'Preparing the preview…' }).waitFor();
    await fs.writeFile(path.join(tmp, 'release-preview'), '');
    await page.locator('.player video').waitFor({ timeout: 60_000 });
    assert.equal((await api<{ previewPending: boolean }>(`/videos/${videoId}`)).previewPending, false);
    frames = [];
    for (let cursor: number | null = null; ; ) {
      const pageOfFrames: { frames: ApiFrame[]; nextCursor: number | null } = await api(`/videos/${videoId}/detections?limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`);
      frames.push(...pageOfFrames.frames);
      cursor = pageOfFrames.nextCursor;
      if (cursor === null) break;
    }
    assert.equal(frames.length, CLIP_SECONDS * SAMPLE_FPS);
  });

  it('plays the preview (vtest.avi is msmpeg4) with boxes drawn over the people while it plays', async () => {
    const player = page.locator('.player video');
    await player.waitFor();
    assert.equal(await player.locator('source').getAttribute('type'), 'video/mp4');
    // Debian's Chromium has the proprietary codecs: H.264 High profile, as the preview is encoded.
    assert.equal(await player.evaluate((video: HTMLVideoElement) => video.canPlayType('video/mp4; codecs="avc1.64001f"')), 'probably');
    await player.evaluate((video: HTMLVideoElement) => video.play());
    const titles = new Set<string>();
    const drawnFrames = new Set<string>();
    await waitFor('boxes over people while playing, on several frames', async () => {
      for (const title of await overlayTitles()) titles.add(title);
      drawnFrames.add((await page.locator('svg.overlay').getAttribute('data-pts-ms')) ?? '');
      const playing = await player.evaluate((video: HTMLVideoElement) => !video.paused && video.currentTime > 0);
      return playing && drawnFrames.size >= 3 && [...titles].some((title) => /^person 0\.\d\d$/.test(title)) ? true : undefined;
    }, 60_000, 50);
    assert.ok([...titles].every((title) => /^[a-z ]+ [01]\.\d\d$/.test(title)), [...titles].join(', '));
    // Decoded by the browser: the preview's own picture (vtest.avi's 768x576; under 720p, so not scaled), no error.
    assert.deepEqual(await player.evaluate((video: HTMLVideoElement) => [video.error, video.videoWidth, video.videoHeight]), [null, 768, 576]);
    await shot('video-playing');
  });

  it('draws exactly the detections of the frame on screen, where the API says, scaled to the element', async () => {
    // The detected frame with the most people.
    const busiest = [...frames].sort((a, b) => b.detections.filter((d) => d.className === 'person').length - a.detections.filter((d) => d.className === 'person').length)[0]!;
    assert.ok(busiest.detections.some((detection) => detection.className === 'person'), 'vtest.avi shows people');
    await showFrame(busiest);
    assertSameBoxes(await drawnBoxes(), await expectedBoxes(busiest, () => true));
    // The same after the element changes size: the boxes follow the picture's new place and scale.
    await page.setViewportSize({ width: 900, height: 860 });
    await waitFor('the overlay to follow the resized player', async () => {
      const [drawn, expected] = await Promise.all([drawnBoxes(), expectedBoxes(busiest, () => true)]);
      try {
        assertSameBoxes(drawn, expected);
        return true;
      } catch {
        return undefined;
      }
    }, 10_000, 50);
    await page.setViewportSize({ width: 1280, height: 860 });
    await shot('video-page', { fullPage: true });
  });

  it('filters the boxes by class and by minimum confidence', async () => {
    const frame = [...frames].sort((a, b) => b.detections.length - a.detections.length)[0]!;
    await showFrame(frame);
    const people = page.getByRole('checkbox', { name: 'person', exact: true });
    await people.uncheck();
    await waitFor('the person boxes to disappear', async () => ((await overlayTitles()).some((title) => title.startsWith('person ')) ? undefined : true), 10_000, 50);
    assertSameBoxes(await drawnBoxes(), await expectedBoxes(frame, (detection) => detection.className !== 'person'));
    await people.check();
    // Only people: every other class unticked.
    const others = page.locator('fieldset.classes input[type="checkbox"]');
    for (const box of await others.all()) if ((await labelOf(box)) !== 'person') await box.uncheck();
    assertSameBoxes(await drawnBoxes(), await expectedBoxes(frame, (detection) => detection.className === 'person'));
    for (const box of await others.all()) await box.check();
    await setMinimumConfidence(0.7);
    await waitFor('only confident boxes', async () => ((await overlayTitles()).every((title) => Number(title.split(' ').pop()) >= 0.7) ? true : undefined), 10_000, 50);
    assertSameBoxes(await drawnBoxes(), await expectedBoxes(frame, (detection) => detection.confidence >= 0.7));
    await setMinimumConfidence(0);
    assertSameBoxes(await drawnBoxes(), await expectedBoxes(frame, () => true));
  });

  it('seeks the player to a bucket clicked on the timeline', async () => {
    const summary = await api<{ bucketSeconds: number; buckets: Array<{ startMs: number; counts: Record<string, number> }> }>(`/videos/${videoId}/summary?bucket=1`);
    const personBars = page.locator('.timeline .lane', { has: page.locator('.lane-label', { hasText: /^person$/ }) }).locator('button.bar');
    assert.equal(await personBars.count(), summary.buckets.filter((bucket) => (bucket.counts.person ?? 0) > 0).length, 'one bar per bucket with people');
    const target = summary.buckets.filter((bucket) => (bucket.counts.person ?? 0) > 0 && bucket.startMs > 0).at(-1)!;
    await page.locator('.player video').evaluate((video: HTMLVideoElement) => video.pause());
    await personBars.and(page.locator(`[data-start-ms="${target.startMs}"]`)).click();
    await waitFor('the player at the bucket', async () => {
      const time = await page.locator('.player video').evaluate((video: HTMLVideoElement) => (video.seeking ? -1 : video.currentTime));
      return Math.abs(time - target.startMs / 1000) < 0.001 ? true : undefined;
    }, 10_000, 50);
    const nearest = [...frames].sort((a, b) => Math.abs(a.ptsMs - target.startMs) - Math.abs(b.ptsMs - target.startMs))[0]!;
    await page.locator(`svg.overlay[data-pts-ms="${nearest.ptsMs}"]`).waitFor();
  });

  it('downloads the detections as CSV and JSON, equal to the export endpoint', async () => {
    for (const [name, format] of [['Download CSV', 'csv'], ['Download JSON', 'json']] as const) {
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name }).click()]);
      assert.equal(download.suggestedFilename(), `${videoId}-detections.${format}`);
      const downloaded = await fs.readFile((await download.path())!, 'utf8');
      const res = await apiFetch(`${stack.baseUrl}/videos/${videoId}/detections/export?format=${format}`);
      assert.equal(res.status, 200);
      const exported = await res.text();
      if (format === 'csv') {
        const rows = downloaded.trim().split(/\r?\n/);
        assert.deepEqual(rows, exported.trim().split(/\r?\n/));
        assert.equal(rows[0], 'frame_index,pts_ms,captured_at,class_id,class_name,confidence,x1,y1,x2,y2');
        assert.equal(rows.length - 1, frames.reduce((sum, frame) => sum + frame.detections.length, 0), 'one row per detection');
      } else {
        assert.deepEqual(JSON.parse(downloaded), JSON.parse(exported));
      }
    }
  });

  it('lists the video with its status, progress, duration, top classes and failed frames', async () => {
    await page.getByRole('link', { name: 'Videos', exact: true }).click();
    const row = page.locator(`tr[data-video-id="${videoId}"]`);
    await row.waitFor();
    const video = await api<{ topClasses: Array<{ className: string; count: number }> }>(`/videos/${videoId}`);
    const cells = await row.locator('td').allInnerTexts();
    assert.equal(cells[0], 'pedestrians.avi');
    assert.equal(cells[1], 'completed');
    assert.match(cells[2]!, new RegExp(`^${CLIP_SECONDS * SAMPLE_FPS} / ${CLIP_SECONDS * SAMPLE_FPS} frames \\(100%\\)`));
    assert.equal(cells[3], `0:0${CLIP_SECONDS}`);
    assert.equal(cells[4], video.topClasses.map((top) => `${top.className} (${top.count})`).join(', '));
    assert.equal(cells[5], '0');
    await shot('videos');
    await row.getByRole('link', { name: 'pedestrians.avi' }).click();
    await page.waitForURL(new RegExp(`#/videos/${videoId}$`));
  });

  it('shows the dashboard: detections over capture time, in the browser time zone', async () => {
    await page.getByRole('link', { name: 'Dashboard', exact: true }).click();
    assert.equal(await page.getByLabel('Time zone').inputValue(), 'Europe/Berlin');
    const total = frames.reduce((sum, frame) => sum + frame.detections.length, 0);
    await page.getByRole('heading', { name: `${total} detections` }).waitFor();
    await page.getByLabel('Class').selectOption('person');
    const people = frames.reduce((sum, frame) => sum + frame.detections.filter((d) => d.className === 'person').length, 0);
    await page.getByRole('heading', { name: `${people} detections of person` }).waitFor();
    assert.ok((await page.locator('.chart rect').count()) > 0, 'bars drawn');
    await page.getByLabel('Class').selectOption('');
    await page.getByRole('heading', { name: `${total} detections` }).waitFor();
    await shot('dashboard');
  });

  it('deletes the video from its page once confirmed, and the list no longer shows it', async () => {
    await page.goto(`${stack.baseUrl}/#/videos/${videoId}`);
    await page.getByRole('heading', { name: 'pedestrians.avi' }).waitFor();
    // A completed video cannot be cancelled: only Delete is offered.
    assert.equal(await page.getByRole('button', { name: 'Cancel processing' }).count(), 0);
    const dialogs: string[] = [];
    page.once('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.accept();
    });
    await page.getByRole('button', { name: 'Delete video' }).click();
    await page.waitForURL(/#\/videos$/);
    assert.match(dialogs[0] ?? '', /^Delete "pedestrians\.avi"/);
    await page.getByRole('heading', { name: 'Videos' }).waitFor();
    assert.equal(await page.locator(`tr[data-video-id="${videoId}"]`).count(), 0);
    assert.equal((await apiFetch(`${stack.baseUrl}/videos/${videoId}`)).status, 404);
  });

  it('loaded nothing from another origin and logged no errors (no CSP violation either)', () => {
    assert.deepEqual(foreignRequests, []);
    assert.deepEqual(problems, []);
  });
});

async function labelOf(checkbox: Locator): Promise<string> {
  return checkbox.evaluate((input: HTMLInputElement) => input.closest('label')!.textContent!.replace(/\d+$/, '').trim());
}
