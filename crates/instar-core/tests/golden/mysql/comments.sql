/*!40101 SET NAMES utf8mb4 */;
SELECT 1 --1;
;
SELECT "double; quoted" AS x;
