// Records landed per hour over the last 48 hours (the status endpoint's landed_by_hour), as SVG bars drawn from
// numbers only. Each bar's <title> says its hour and counts; the figure's label sums it up for screen readers.

import {h, s} from "./dom.js";
import {count, plural, utc} from "./format.js";

const WIDTH = 480;
const HEIGHT = 96;
const GAP = 2;

function summary(hours) {
  const total = hours.reduce((sum, hour) => sum + hour.records, 0);
  const batches = hours.reduce((sum, hour) => sum + hour.batches, 0);
  if (total === 0 && batches === 0) return {total, text: "nothing landed in the last 48 hours"};
  const peak = hours.reduce((best, hour) => (hour.records > best.records ? hour : best), hours[0]);
  return {
    total,
    text: `${plural(total, "record")} in ${plural(batches, "batch", "batches")} landed in the last 48 hours; ` +
      `at most ${count(peak.records)} in one hour (${utc(peak.hour)})`,
  };
}

/** The chart for one destination's landed_by_hour (oldest first, the current hour last). */
export function landedChart(hours, label) {
  const {total, text} = summary(hours);
  const peak = Math.max(0, ...hours.map((hour) => hour.records));
  const most = Math.max(1, peak);
  const slot = WIDTH / Math.max(1, hours.length);
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", class: "chart-bars", "aria-hidden": "true",
  });
  svg.append(s("line", {x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5, class: "chart-axis"}));
  hours.forEach((hour, index) => {
    const height = hour.records > 0 ? Math.max(2, (hour.records / most) * (HEIGHT - 4)) : 0;
    const bar = s("rect", {
      x: (index * slot + GAP / 2).toFixed(2), width: Math.max(1, slot - GAP).toFixed(2),
      y: (HEIGHT - height).toFixed(2), height: height.toFixed(2), class: "chart-bar",
    });
    bar.append(s("title", {}, `${utc(hour.hour)}: ${plural(hour.records, "record")}, ` +
      `${plural(hour.batches, "batch", "batches")}`));
    svg.append(bar);
  });
  return h("figure", {class: "chart", role: "img", "aria-label": `${label}: ${text}`},
    h("figcaption", {}, h("span", {}, label), h("span", {class: "chart-total"}, `${count(total)} in 48 h`)),
    svg,
    h("div", {class: "chart-scale", "aria-hidden": "true"},
      h("span", {}, "48 h ago"), h("span", {}, `max ${count(peak)}/h`), h("span", {}, "now")));
}
