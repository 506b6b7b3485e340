-- A one-character last word ("star t", "alien r") matched by expanding every indexed term that
-- starts with that letter and merging their doclists over the whole index before the first row
-- came out: the slowest searches of a large catalogue. A prefix index of one character serves
-- that case the way the two- and three-character ones serve theirs.
DROP TABLE movies_fts;

CREATE VIRTUAL TABLE movies_fts USING fts5 (
    title,
    content = 'movies',
    content_rowid = 'search_rank',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);

INSERT INTO movies_fts (movies_fts) VALUES ('rebuild');
