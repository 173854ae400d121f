// Words the pages share for an incident's severity and state (the wall, its drawer, the history, the
// building profile). The notification page says 待确认 for an open incident on purpose: it keeps its own.
export const SEVERITY = { critical: "紧急", high: "高", warning: "中", info: "低" };
export const STATE = { open: "待响应", acknowledged: "已确认", dispatched: "已派单", on_scene: "已到场",
                       resolved: "已处置", closed: "已结案", false_alarm: "误报", merged: "已合并" };
