// The book's search (html_search_scorer in _config.yml): Sphinx's default weights, plus a
// boost for the start page, whose table holds the error texts readers paste. The start page
// only ever ranks among the pages that matched; it then comes first.
var Scorer = {
  score: (result) => {
    const [docname, _title, anchor, _descr, score, _filename] = result;
    return docname === "book/start_here" && !anchor ? score + 100 : score;
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
