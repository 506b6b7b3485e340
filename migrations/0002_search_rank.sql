-- Title search reads its matches in popularity order, so that a broad prefix ("th*" matches a
-- third of a large catalogue) ranks a bounded number of rows instead of all of them.
--
-- `search_rank` is 1 for the most rated movie, then by rating_count descending and movie id; the
-- search index is keyed by it instead of by movie id, and FTS5 returns matches in key order.
-- `catalogue::search::index_titles` (after every bulk load) assigns the ranks and rebuilds the index;
-- here it is done once for a catalogue dumped before this migration.
ALTER TABLE movies ADD COLUMN search_rank INTEGER;

UPDATE movies SET search_rank = ranked.rank
FROM (SELECT movie_id, row_number() OVER (ORDER BY rating_count DESC, movie_id) AS rank
      FROM movies) AS ranked
WHERE movies.movie_id = ranked.movie_id;

CREATE UNIQUE INDEX movies_search_rank ON movies (search_rank);

DROP TABLE movies_fts;

CREATE VIRTUAL TABLE movies_fts USING fts5 (
    title,
    content = 'movies',
    content_rowid = 'search_rank',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

INSERT INTO movies_fts (movies_fts) VALUES ('rebuild');
